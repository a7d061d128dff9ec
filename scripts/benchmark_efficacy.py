"""Does HeRD disentangle, against the baselines? One entry point, three parts, each at several
seeds.

    python scripts/benchmark_efficacy.py --part shapes      # dSprites-like shapes: the baselines'
                                                            known # results, universal and class
                                                            HeRD against them
    python scripts/benchmark_efficacy.py --part digits      # classifier side: purity per class and
    per image python scripts/benchmark_efficacy.py --part robustness  # robust accuracy, gradient
    masking ruled in or out python scripts/benchmark_efficacy.py --part concepts    # 100 classes,
    and against Concept Whitening

Each part trains its runs, saves every run's numbers to reports/benchmark_efficacy_<part>.json (so
it
resumes: finished runs are skipped), then writes its table into reports/ and docs/efficacy.md with
the commit and machine. ``--publish-only`` rewrites the table from the saved runs.
"""

from __future__ import annotations

import argparse
import importlib

PARTS = {
    "shapes": "_efficacy_shapes",
    "digits": "_efficacy_digits",
    "robustness": "_efficacy_robustness",
    "concepts": "_efficacy_concepts",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", required=True, choices=list(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--publish-only", action="store_true", help="write the table from the saved runs"
    )
    known, rest = parser.parse_known_args()
    part = importlib.import_module(PARTS[known.part])
    sub = argparse.ArgumentParser(prog=f"benchmark_efficacy.py --part {known.part}")
    part.add_arguments(sub)
    part.run(known.seeds, known.publish_only, sub.parse_args(rest))


if __name__ == "__main__":
    main()
