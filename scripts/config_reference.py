"""Write docs/configuration.md from the option groups that make Config (the test suite checks that
it is current).

    python scripts/config_reference.py
"""

from pathlib import Path

from herd_cls.config import reference_markdown

if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    path.write_text(reference_markdown())
    print(path)
