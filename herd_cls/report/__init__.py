"""Rendering: matplotlib figures and Jinja2 HTML pages from the analyses' tensors and dicts."""
