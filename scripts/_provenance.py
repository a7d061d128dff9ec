"""Where a benchmark ran: commit, machine, library versions; and writing tables into README."""
from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def commit() -> str:
    """The short commit of the code, with ``+uncommitted changes`` when tracked files differ from it."""
    # reports/ holds the benchmarks' own outputs, which change while they run
    dirty = "+uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports") else ""
    return _git("rev-parse", "--short", "HEAD") + dirty


def provenance() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"commit {commit()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.machine()} {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def publish(name: str, markdown: str) -> Path:
    """Print the table, write reports/<name>.md and replace the block between <!-- name --> markers in
    README.md and docs/*.md, wherever it is."""
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
