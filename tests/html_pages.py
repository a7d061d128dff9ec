"""One HTML checker for every page test: balanced tags, relative links that exist and are not
empty."""

from html.parser import HTMLParser
from pathlib import Path

VOID = {"img", "meta", "br", "link", "input", "hr"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.images, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        refs = [v for k, v in attrs if k in ("src", "href")]
        self.refs += refs
        if tag == "img":
            self.images += refs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


def check_page(page: Path, min_bytes: int = 500) -> _Page:
    """Parse ``page``; assert its tags balance and every link is relative, exists and holds at least
    ``min_bytes``. Returns the parser (``.refs``: every src/href, ``.images``: the img sources)."""
    parser = _Page()
    parser.feed(page.read_text())
    assert parser.stack == [], f"{page.name}: unclosed {parser.stack}"
    for ref in parser.refs:
        # relative links only: the folder opens from file://
        assert not ref.startswith(("http", "/")), ref
        target = page.parent / ref
        assert target.is_file(), f"{page.name} links to missing {ref}"
        assert target.stat().st_size >= min_bytes, f"{page.name} links to a near-empty {ref}"
    return parser
