"""HTML pages from Jinja2 templates shipped in the package; relative links, no JavaScript."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write


def number(value: float) -> str:
    """A metric as the pages show it: 3 decimals, or "–" where a run has no such number (NaN)."""
    return "–" if value != value else f"{value:.3f}"


def render(template: str, path: Path, **context) -> Path:
    """Render ``templates/<template>`` with ``context`` to ``path`` (written atomically)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("herd_cls.report", "templates"),
        autoescape=select_autoescape(),
        undefined=StrictUndefined,
    )
    env.filters["number"] = number
    html = env.get_template(template).render(**context)
    atomic_write(path, html)
    return path
