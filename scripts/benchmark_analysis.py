"""Time the analysis commands on the default run: sweep, attribute, report and robustness.

Targets: `herd-cls sweep --class 3` at most 20 s the first time (it fits the post-hoc decoder) and
at most 10 s after that (sweeps issue), `herd-cls report` at most 60 s (analysis issue),
`herd-cls robustness` at most 60 s (robustness issue), on a 2-core CPU,
after the default `herd-cls train --backbone resnet18 --reg class`. Each command is timed as a whole
process (Python start-up and imports included), best and worst of --repeats runs. Writes
reports/benchmark_analysis.md and the matching block of docs/performance.md.

    python scripts/benchmark_analysis.py [--run RUN_DIR] [--repeats 3]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _harness import herd_cli, markdown_table, provenance, publish, readme_run

TARGETS = {"first sweep": 20.0, "sweep": 10.0, "attribute": None, "report": 60.0, "robustness": 60.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a trained default run (default: train one now)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = readme_run(args.run, Path(tmp) / "default", "--quiet")
        commands = {"first sweep": ["sweep", "--class", "3"], "sweep": ["sweep", "--class", "3"],
                    "attribute": ["attribute"], "report": ["report"], "robustness": ["robustness"]}
        rows = []
        for name, cmd in commands.items():
            times = []
            for _ in range(args.repeats):
                if name == "first sweep":  # a run as train leaves it: no post-hoc decoder cached yet
                    for cached in Path(run).glob("posthoc_decoder.*"):
                        cached.unlink()
                t0 = time.perf_counter()
                herd_cli(*cmd, "--run", run, "--out", Path(tmp) / "out", stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
            target = TARGETS[name]
            verdict = "–" if target is None else ("met" if max(times) <= target else "MISSED")
            label = f"`herd-cls {' '.join(cmd)}`" + (" (first: fits the post-hoc decoder)" if name == "first sweep" else "")
            rows.append([label, f"{min(times):.1f}", f"{max(times):.1f}", "–" if target is None else f"≤ {target:.0f}",
                         verdict])
    md = (f"Analysis commands on the default digits run, {args.repeats} runs each, whole process; "
          f"`python scripts/benchmark_analysis.py` at {provenance()}.\n\n"
          + markdown_table(["command", "best s", "worst s", "target s", ""], rows) + "\n")
    publish("benchmark_analysis", md)


if __name__ == "__main__":
    main()
