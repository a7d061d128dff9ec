"""Which class-specific formulation gives class-block structure? One row per training setting.

Trains resnet18 on digits for each setting (default epochs) and reports test accuracy,
reconstruction error and Hessian block purity (chance is (n/d)^2 = 0.008 for 2-dim blocks in
d = 22). Writes reports/compare_variants.md and the matching README block. The efficacy issue
extends this to several seeds, data sets and baselines.

    python scripts/compare_variants.py [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _provenance import provenance, publish

SETTINGS = {
    "none": [],
    "reference, alpha-reg 1": ["--variant", "reference", "--alpha-reg", "1"],
    "block, alpha-reg 1": ["--variant", "block", "--alpha-reg", "1"],
    "purity, alpha-reg 1": ["--variant", "purity", "--alpha-reg", "1"],
    "purity, alpha-reg 5": ["--variant", "purity", "--alpha-reg", "5"],
    "purity, alpha-reg 20": ["--variant", "purity", "--alpha-reg", "20"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, extra) in enumerate(SETTINGS.items()):
            reg = "none" if label.startswith("none") else "class"
            subprocess.run([sys.executable, "-m", "herd_cls", "train", "--reg", reg, "--seed", str(args.seed),
                            "--out-dir", tmp, "--name", str(i), "--quiet", *extra], check=True)
            s = json.loads((Path(tmp) / str(i) / "summary.json").read_text())
            recon = f"{s['test_recon']:.4f}" if s["test_recon"] is not None else "–"
            rows.append(f"| {label} | `{' '.join(['--reg', reg, *extra])}` | {s['test_accuracy']:.4f} | "
                        f"{recon} | {s['block_purity']:.3f} |")
    md = (f"resnet18 on digits, seed {args.seed}, defaults otherwise; `python scripts/compare_variants.py` at "
          f"{provenance()}.\n\n| setting | options | test accuracy | test recon MSE | block purity |\n"
          "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    publish("compare_variants", md)


if __name__ == "__main__":
    main()
