"""Targets on benchmark rows (:mod:`.tables`' ``Rows`` and keys), each returning one verdict line,
or None where a row it reads was not run: :func:`at_least`, :func:`above`, :func:`below`,
:func:`above_best_of`, :func:`paired_above`, :func:`paired_at_equal_accuracy`,
:func:`ratio_at_most`, :func:`ratio_at_least`, :func:`within_points`; :func:`check` reads one
written as data (a benchmark spec's ``targets``).
"""

from __future__ import annotations

from typing import Callable

from .tables import Field, Key, Rows, mean, paired, value_at


def verdict(name: str, ok: bool, detail: str) -> str:
    return f"- {name}: **{'met' if ok else 'NOT MET'}** ({detail})"


def verdicts(*lines: str | None) -> str:
    """The verdict lines of the targets whose rows were run, one per line."""
    return "\n".join(line for line in lines if line is not None)


def at_least(
    rows: Rows, name: str, label: str, key: Key, bound: float, every_seed: bool = False
) -> str | None:
    """``key`` of row ``label`` is at least ``bound`` (the field in each seed if ``every_seed``)."""
    if label not in rows:
        return None
    if every_seed:
        values = [value_at(r, key) for r in rows[label]]
        ok = all(v is not None and v >= bound for v in values)
        return verdict(name, ok, ", ".join("–" if v is None else f"{v:g}" for v in values))
    value = mean(rows, label, key)
    return verdict(name, value >= bound, f"{value:.3f}")


def above(rows: Rows, name: str, label: str, keys: list[Key], others: list[str]) -> str | None:
    """Every key of row ``label`` is above the same key of each of ``others``."""
    return _beyond(rows, name, label, keys, others, 1)


def below(rows: Rows, name: str, label: str, keys: list[Key], others: list[str]) -> str | None:
    """Every key of row ``label`` is below the same key of each of ``others``."""
    return _beyond(rows, name, label, keys, others, -1)


def _beyond(rows, name, label, keys, others, sign) -> str | None:
    if not {label, *others} <= set(rows):
        return None
    ok, details = True, []
    for key in keys:
        value, theirs = mean(rows, label, key), [mean(rows, o, key) for o in others]
        ok &= all(sign * (value - v) > 0 for v in theirs)
        named = f"{key} " if isinstance(key, str) and len(keys) > 1 else ""
        details.append(f"{named}{value:.3f} vs {' / '.join(f'{v:.3f}' for v in theirs)}")
    return verdict(name, ok, ", ".join(details))


def above_best_of(
    rows: Rows, name: str, label: str, key: Key, others: list[str], their_keys: list[Key]
) -> str | None:
    """``key`` of row ``label`` above, for each of ``others``, the best of that row's
    ``their_keys`` (a row is held to its better reading, ours to the one it claims)."""
    if not {label, *others} <= set(rows):
        return None
    ours = mean(rows, label, key)
    best = {o: max(mean(rows, o, k) for k in their_keys) for o in others}
    detail = f"{ours:.3f} vs " + ", ".join(f"{o} {b:.3f}" for o, b in best.items())
    return verdict(name, all(ours > b for b in best.values()), detail)


def paired_above(rows: Rows, name: str, label: str, base: str, key: Field) -> str | None:
    """Row ``label`` above ``base`` seed by seed on the field ``key``: more seeds up than down, and
    a mean difference above its standard error."""
    if not {label, base} <= set(rows):
        return None
    d = paired(rows[base], rows[label], lambda r: value_at(r, key))
    return verdict(
        name,
        d["up"] > d["down"] and d["mean"] > d["error"],
        f"{d['mean']:+.3f} ± {d['error']:.3f} over {d['pairs']} seeds, {d['up']} up, "
        f"{d['down']} down",
    )


def paired_at_equal_accuracy(
    rows: Rows,
    name: str,
    label: str,
    base: str,
    key: Field,
    accuracy: Field,
    points: float = 1.0,
    strictly: bool = False,
) -> str | None:
    """Row ``label`` at or above ``base`` on ``key`` seed by seed (``strictly``: above by more than
    the paired differences' standard error) at an ``accuracy`` at most ``points`` percentage points
    below ``base``'s. A mean difference within its standard error, or one that rounds to 0.000, is
    level."""
    if not {label, base} <= set(rows):
        return None
    d = paired(rows[base], rows[label], lambda r: value_at(r, key))
    gap = 100 * (mean(rows, base, accuracy) - mean(rows, label, accuracy))
    margin = max(d["error"], 5e-4)
    shown = d["mean"] > margin
    ok = (shown if strictly else d["mean"] >= -margin) and gap <= points
    words = "above" if shown else "below" if d["mean"] < -margin else "level: no difference shown"
    return verdict(
        name,
        ok,
        f"paired difference {d['mean']:+.3f} ± {d['error']:.3f} over {d['pairs']} seeds, {words}; "
        f"accuracy {gap:+.2f} points below {base}'s",
    )


def ratio_at_most(
    rows: Rows, name: str, label: str, base: str, key: Key, bound: float, every_seed=False
) -> str | None:
    """``key`` of row ``label`` over the seed mean of ``base``'s is at most ``bound`` (in every seed
    of ``label`` where ``every_seed``)."""
    return _ratio(rows, name, label, base, key, bound, every_seed, -1)


def ratio_at_least(
    rows: Rows, name: str, label: str, base: str, key: Key, bound: float, every_seed=False
) -> str | None:
    """``key`` of row ``label`` over the seed mean of ``base``'s is at least ``bound`` (in every
    seed of ``label`` where ``every_seed``)."""
    return _ratio(rows, name, label, base, key, bound, every_seed, 1)


def _ratio(rows, name, label, base, key, bound, every_seed, sign) -> str | None:
    if not {label, base} <= set(rows):
        return None
    theirs = mean(rows, base, key)
    ratios = [value_at(r, key) / theirs for r in rows[label]] if every_seed else []
    ratios = ratios or [mean(rows, label, key) / theirs]
    ok = all(sign * (x - bound) >= 0 for x in ratios)
    return verdict(name, ok, ", ".join(f"{x:.2f}x" for x in ratios))


def within_points(
    rows: Rows, name: str, label: str, base: str, points: float, key: Key = "test_accuracy"
) -> str | None:
    """Row ``label``'s accuracy is at most ``points`` percentage points below ``base``'s."""
    if not {label, base} <= set(rows):
        return None
    ours, theirs = mean(rows, label, key), mean(rows, base, key)
    gap = 100 * (theirs - ours)
    return verdict(name, gap <= points, f"{ours:.4f} vs {theirs:.4f}, {gap:+.2f} points below")


TARGETS = {
    f.__name__: f
    for f in (
        at_least,
        above,
        below,
        above_best_of,
        paired_above,
        paired_at_equal_accuracy,
        ratio_at_most,
        ratio_at_least,
        within_points,
    )
}


def check(rows: Rows, target: dict, statistics: dict[str, Callable] | None = None) -> str | None:
    """The verdict line of one target written as data, {"check": one of TARGETS, "name": ...,
    "label": ..., and the check's other arguments}; a key (``key``, ``accuracy``, or one of
    ``keys`` or ``their_keys``) may name one of ``statistics`` (functions of a row's records)
    instead of a record field, and a list (as YAML writes a path) is a tuple path into nested
    records."""
    target, statistics = dict(target), statistics or {}
    kind = target.pop("check")
    if kind not in TARGETS:
        raise ValueError(f"unknown target check {kind!r}; valid: {', '.join(TARGETS)}")
    resolve = lambda key: tuple(key) if isinstance(key, list) else statistics.get(key, key)
    for field in ("key", "accuracy"):
        if field in target:
            target[field] = resolve(target[field])
    for field in ("keys", "their_keys"):
        if field in target:
            target[field] = [resolve(k) for k in target[field]]
    return TARGETS[kind](rows, **target)
