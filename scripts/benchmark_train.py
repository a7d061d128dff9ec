"""Time and score the README's main job: `herd-cls train --backbone resnet18 --reg class`.

Target (issue: foundation): at most 180 s on a 2-core CPU with test accuracy >= 0.95 on digits.
Also runs `--reg none` with the same seeds as the baseline, and the `--variant log-purity` option
(efficacy issue) on the same job. Writes reports/benchmark_train.md and the matching README block.

    python scripts/benchmark_train.py [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _provenance import provenance, publish

TARGET_SECONDS, TARGET_ACCURACY = 180, 0.95


RUNS = {"`--reg class`": ["--reg", "class"], "`--reg none`": ["--reg", "none"],
        "`--reg class --variant log-purity`": ["--reg", "class", "--variant", "log-purity"]}


def run(options: list[str], seed: int, out: Path) -> dict:
    name = f"{'-'.join(o.strip('-') for o in options)}-{seed}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "herd_cls", "train", "--backbone", "resnet18", *options,
                    "--seed", str(seed), "--out-dir", str(out), "--name", name, "--quiet"], check=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / name / "summary.json").read_text())
    return {"wall": wall, "acc": summary["test_accuracy"], "purity": summary["block_purity"],
            "train": summary["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in RUNS.items():
            res = [run(options, s, Path(tmp)) for s in args.seeds]
            stat = {k: (np.mean([r[k] for r in res]), np.std([r[k] for r in res])) for k in res[0]}
            worst_wall, worst_acc = max(r["wall"] for r in res), min(r["acc"] for r in res)
            ok = worst_wall <= TARGET_SECONDS and worst_acc >= TARGET_ACCURACY
            rows.append(f"| {label} | {stat['acc'][0]:.4f} ± {stat['acc'][1]:.4f} | "
                        f"{stat['purity'][0]:.3f} ± {stat['purity'][1]:.3f} | {stat['wall'][0]:.0f} "
                        f"(max {worst_wall:.0f}) | {stat['train'][0]:.0f} | "
                        f"{'met' if ok else 'MISSED'} |")
    md = (f"`herd-cls train --backbone resnet18 --reg class` (and `--reg none`, and the log-purity option) on digits, seeds "
          f"{', '.join(map(str, args.seeds))}; measured by `python scripts/benchmark_train.py` at "
          f"{provenance()}.\n\n"
          f"| run | test accuracy | block purity | wall s (whole command) | training s | "
          f"target ≤ {TARGET_SECONDS} s, ≥ {TARGET_ACCURACY} acc |\n|---|---|---|---|---|---|\n"
          + "\n".join(rows) + "\n")
    publish("benchmark_train", md)


if __name__ == "__main__":
    main()
