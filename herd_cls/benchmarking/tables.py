"""What benchmark records become: seed tables, paired tables, published pages.

A benchmark's records are grouped into ``Rows``: {row label: its records, one per seed}. A *key*
reads a row: a record field (its mean over the seeds), named or, in nested records, reached by a
tuple path such as ``("default", "clean", "accuracy")`` (:func:`value_at`), or a function of the
row's records (a statistic of the whole row, such as its lowest class). Targets on rows are in
:mod:`.target_checks`; :func:`publish` writes reports/<name>.md and the block between
<!-- name --> markers in README.md and docs/*.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Union

import numpy as np

from .store import ROOT, stamp

Rows = dict[str, list[dict]]
Field = Union[str, tuple]  # a record's field, or a path of keys and list indices into it
Key = Union[Field, Callable[[list[dict]], float]]


def value_at(record: dict, field: Field):
    """The record's ``field``, following a tuple path through nested dicts and lists; None where a
    step is missing or None."""
    for step in field if isinstance(field, tuple) else (field,):
        try:
            record = None if record is None else record[step]
        except (KeyError, IndexError):
            return None
    return record


def group(
    records: Iterable[dict], field: str | tuple[str, ...] = "setting", order: Iterable | None = None
) -> Rows:
    """Records by ``field`` (by a tuple of their values for a tuple of fields), in ``order``
    (default: first appearance), each group in the records' order."""
    groups: Rows = {}
    for r in records:
        key = tuple(r[f] for f in field) if isinstance(field, tuple) else r[field]
        groups.setdefault(key, []).append(r)
    return groups if order is None else {k: groups[k] for k in order if k in groups}


def nested(rows: dict[tuple, list[dict]]) -> dict[object, Rows]:
    """{first label: {second label: records}} of rows labelled by pairs (as :func:`group` by two
    fields labels them), in their order."""
    found: dict[object, Rows] = {}
    for (first, second), records in rows.items():
        found.setdefault(first, {})[second] = records
    return found


def mean(rows: Rows, label: str, key: Key) -> float:
    """The row's value of ``key``: the seed mean of a field, or the statistic a function gives."""
    records = rows[label]
    return float(key(records) if callable(key) else np.mean([value_at(r, key) for r in records]))


def mean_std(values) -> str:
    """ "mean ± std" of the values that are not None, to 3 decimals; "–" for none."""
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def paired(
    base: list[dict], other: list[dict], fn: Callable[[dict], float], key: str = "seed"
) -> dict:
    """``fn(other) - fn(base)`` on the records both have (matched by ``key``): the mean difference,
    its standard error (NaN for fewer than 2 pairs), the number of pairs and how many differences
    are above and below 0."""
    by_key = {r[key]: fn(r) for r in base}
    d = np.array([fn(r) - by_key[r[key]] for r in other if r[key] in by_key], dtype=float)
    error = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {
        "mean": float(d.mean()) if len(d) else float("nan"),
        "error": float(error),
        "pairs": len(d),
        "up": int((d > 0).sum()),
        "down": int((d < 0).sum()),
    }


def table_row(cells) -> str:
    return "|" + "|".join(f" {c} " if c != "" else " " for c in cells) + "|"


def markdown_table(columns: list[str], rows: Iterable) -> str:
    """A markdown table (no trailing newline); rows are lists of cells."""
    return "\n".join([table_row(columns), "|" + "---|" * len(columns), *map(table_row, rows)])


def seed_table(rows: Rows, columns: list[tuple[Key, str]], lead: tuple[str, ...] = ()) -> str:
    """One line per row: its label (a tuple of labels fills the ``lead`` columns before "setting"),
    its number of seeds, then per (key, title) of ``columns`` ``mean ± std`` of a field over the
    seeds, or the cell a function of the row's records returns."""

    def cell(records, key):
        return key(records) if callable(key) else mean_std([value_at(r, key) for r in records])

    return markdown_table(
        [*lead, "setting", "seeds", *(title for _, title in columns)],
        [
            [*(label if isinstance(label, tuple) else (label,)), len(records)]
            + [cell(records, key) for key, _ in columns]
            for label, records in rows.items()
        ],
    )


def each_seed(field: Field, fmt: str = "{}") -> Callable[[list[dict]], str]:
    """A :func:`seed_table` cell: the field of every seed, '–' where a record lacks it."""
    return lambda records: ", ".join(
        "–" if value_at(r, field) is None else fmt.format(value_at(r, field)) for r in records
    )


def per_class(records: list[dict], field: Field | Callable[[dict], list]) -> np.ndarray:
    """(K,) each class's seed mean: ``field`` is a per-class list in every record, or reads it
    from a record."""
    read = field if callable(field) else (lambda r: value_at(r, field))
    return np.mean([read(r) for r in records], 0)


def lowest_class(field: Field | Callable[[dict], list]) -> Callable[[list[dict]], float]:
    """A row statistic: the lowest of :func:`per_class`."""
    return lambda records: float(per_class(records, field).min())


def each_seed_lowest(field: Field) -> Callable[[list[dict]], str]:
    """A :func:`seed_table` cell: mean ± std over the seeds of each seed's lowest class (beside
    :func:`lowest_class`, the lowest of the seed means)."""
    return lambda records: mean_std([min(value_at(r, field)) for r in records])


def formatted(
    statistic: Callable[[list[dict]], float], fmt: str = "{:.3f}"
) -> Callable[[list[dict]], str]:
    """A :func:`seed_table` cell: a row statistic, formatted."""
    return lambda records: fmt.format(statistic(records))


def paired_table(rows: Rows, base: str, columns: list[tuple[Field, str]]) -> str:
    """Each row against ``base`` on the seeds both have: per (field, title), the mean of the
    per-seed differences ± its standard error and how many seeds are up and down, with words where
    the mean is within one standard error (not a finding). Rows with fewer than 2 pairs are left
    out; "" without ``base``."""
    if base not in rows:
        return ""
    unclear = ", within its standard error: no difference shown"
    lines = []
    for label, records in rows.items():
        diffs = [
            paired(rows[base], records, lambda r, f=field: value_at(r, f)) for field, _ in columns
        ]
        if label == base or diffs[0]["pairs"] < 2:
            continue
        cells = [
            f"{d['mean']:+.3f} ± {d['error']:.3f} ({d['up']} up, {d['down']} "
            f"down{'' if abs(d['mean']) > d['error'] else unclear})"
            for d in diffs
        ]
        lines.append([label, diffs[0]["pairs"], *cells])
    titles = [f"{title} − {base}" for _, title in columns]
    return markdown_table(["setting", "paired seeds", *titles], lines)


def page(intro: str, records: Iterable[dict], *sections: str) -> str:
    """A published page: ``intro`` (what was run and by which command), the :func:`stamp` of the
    ``records`` it shows, then ``sections`` (tables, headings, verdict lines) a blank line apart."""
    return f"{intro} {stamp(records)}.\n\n" + "\n\n".join(sections) + "\n"


def publish(name: str, markdown: str) -> Path:
    """Print the table, write reports/<name>.md and replace the block between <!-- name --> markers
    in README.md and docs/*.md, wherever it is."""
    print(markdown)
    out = ROOT / "reports" / f"{name}.md"
    out.write_text(markdown)
    pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        if pattern.search(text):
            page.write_text(pattern.sub(lambda m: m.group(1) + markdown + m.group(2), text))
    print(out)
    return out
