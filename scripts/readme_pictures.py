"""The README's pictures, from a real run of the README's commands: train, sweep, robustness,
report.

Trains the default run (or uses --run), runs the analysis commands as a user would, and copies one
picture of each step, downscaled, into docs/images/ with a caption file that records the commit. The
shapes latent grids come from the shapes benchmark's runs (``efficacy_shapes.py``).

    python scripts/readme_pictures.py [--run runs/latest]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image
from herd_cls import benchmarking as bench


PICTURES = {  # docs/images/<name>: the file the commands wrote, relative to the report folder
    "train_curves.png": "figures/run0_curves.png",
    "sweep_class3.png": "sweep_class_3/pictures_dim6.png",
    "robustness.png": "robustness/run0_overall.png",
    "report_hessian_class3.png": "figures/run0_hessian_3.png",
}


def herd(*args) -> None:
    bench.herd_cli(*args, "--quiet")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", help="an existing run of the README's train command (default: train one)"
    )
    parser.add_argument(
        "--width", type=int, default=560, help="largest width of a picture, in pixels"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = bench.readme_run(args.run, Path(tmp) / "readme", "--quiet")
        out = Path(tmp) / "report"
        herd("sweep", "--class", "3", "--run", run, "--out", str(out))
        herd("robustness", "--run", run, "--out", str(out))
        herd("report", "--run", run, "--out", str(out))
        target = bench.ROOT / "docs" / "images"
        target.mkdir(parents=True, exist_ok=True)
        for name, source in PICTURES.items():
            image = Image.open(out / source).convert("RGB")
            if image.width > args.width:
                image = image.resize(
                    (args.width, round(image.height * args.width / image.width)), Image.LANCZOS
                )
            image.save(target / name, optimize=True)
            print(target / name)
    (target / "README.md").write_text(
        "Pictures for the README, written by `python scripts/readme_pictures.py` from the "
        f"README's default run, at {bench.provenance()}.\n"
    )


if __name__ == "__main__":
    main()
