"""The README's pictures: one of each step of its flow (train, sweep, robustness, report) from a
real run of its commands, or, with --grids, the latent grids of the shapes benchmark's shipped rows.

By default, trains the README's run (or uses --run), runs the analysis commands as a user would and
copies one picture of each step, downscaled, into docs/images/. With --grids, retrains seed 0 of the
plain autoencoder and universal HeRD rows of configs/benchmarks/efficacy_shapes.yaml at the table's
budget (the table's settings and seed; float results, and so the pictures, also depend on the
machine and its thread count, which the caption records) and draws each one's grid with `herd-cls
sweep` (no --class, 3 test images). docs/images/README.md records the commit.

    python scripts/readme_pictures.py [--run runs/latest] [--grids]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image
from herd_cls import benchmarking as bench

TARGET = bench.ROOT / "docs" / "images"
PICTURES = {  # docs/images/<name>: the file the commands wrote, relative to the report folder
    "train_curves.png": "figures/run0_curves.png",
    "sweep_class3.png": "sweep_class_3/pictures_dim6.png",
    "robustness.png": "robustness/run0_overall.png",
    "report_hessian_class3.png": "figures/run0_hessian_3.png",
}
GRIDS = {
    "autoencoder": "grid_autoencoder.png",
    "universal HeRD, decoder output": "grid_universal.png",
}
CAPTIONS = {
    "flow": "Pictures for the README, written by `python scripts/readme_pictures.py` from the "
    "README's default run",
    "grids": "The latent grids `grid_autoencoder.png` and `grid_universal.png`, written by `python "
    "scripts/readme_pictures.py --grids` (seed 0 of the shapes table's plain autoencoder and "
    "shipped universal HeRD rows' settings and budget, retrained; each dim labelled with its most "
    "informative factor; "
    "`grid_reference_*.png` are from the retired original-setting rows)",
}


def save(source: Path, name: str, width: int | None = None) -> None:
    image = Image.open(source).convert("RGB")
    if width is not None and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.save(TARGET / name, optimize=True)
    print(TARGET / name)


def flow_pictures(run: str | None, width: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = bench.readme_run(run, Path(tmp) / "readme", "--quiet")
        out = str(Path(tmp) / "report")
        for command in ("sweep --class 3", "robustness", "report"):
            bench.herd_cli(*command.split(), "--run", run, "--out", out, "--quiet")
        for name, source in PICTURES.items():
            save(Path(out) / source, name, width)


def shapes_grids() -> None:
    spec = bench.spec("efficacy_shapes")
    base = {**spec["common"], **spec["thesis"]["base"]}
    for label, name in GRIDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            rows = spec["thesis"]["rows"][label]
            bench.trained_run(run, {**base, **rows, "steps": spec["steps"], "seed": 0})
            sweep = ["sweep", "--run", run, "--samples", "3", "--out", run / "report", "--quiet"]
            bench.herd_cli(*sweep)
            save(run / "report" / "sweep_grid" / "grid.png", name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="a run of the README's train command (default: train one)")
    parser.add_argument("--width", type=int, default=560, help="largest width of a flow picture")
    parser.add_argument("--grids", action="store_true", help="the shapes latent grids instead")
    args = parser.parse_args()
    TARGET.mkdir(parents=True, exist_ok=True)
    if args.grids:
        shapes_grids()
    else:
        flow_pictures(args.run, args.width)
    captions = TARGET / "README.md"  # a paragraph per kind of picture, each with its provenance
    text = captions.read_text().strip() if captions.exists() else ""
    paragraphs = dict(zip(CAPTIONS, text.split("\n\n")))
    drawn = "grids" if args.grids else "flow"
    paragraphs[drawn] = f"{CAPTIONS[drawn]}, at {bench.provenance()}."
    captions.write_text("\n\n".join(paragraphs.get(k, f"{CAPTIONS[k]}.") for k in CAPTIONS) + "\n")


if __name__ == "__main__":
    main()
