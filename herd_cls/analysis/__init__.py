"""Analyses of trained runs: they return tensors and dicts; only herd_cls.report draws."""
