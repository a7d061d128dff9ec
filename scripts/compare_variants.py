"""Which class-specific formulation gives class-block structure? One row per training setting.

Trains on digits for each setting (default epochs) and reports test accuracy, reconstruction error
and Hessian block purity of the classifier loss (chance is (n/d)^2 = 0.008 for 2-dim blocks in
d = 22). With the default resnet18 it runs the formulation settings and the block-head rows;
``--backbone conv`` (fast) runs the wider search of the efficacy issue too: the decoder's Hessian,
block and shared sizes, the head, the ramp. ``--purity-search`` runs instead the search for a
formulation without collapsed classes on the shipped block head, and adds the lowest class's purity
and the lowest class's median image (own-block share of each image's |H|). Writes
reports/compare_variants[_<backbone>][_purity].md and the matching docs block.

    python scripts/compare_variants.py [--seed 0] [--backbone resnet18] [--purity-search]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import markdown_table, provenance, publish, table_row

MLP = ["--head", "mlp", "--shared-dims", "2"]  # the first measurements' model; explicit, so rows keep their meaning
BLOCK = ["--head", "block", "--shared-dims", "0"]
SETTINGS = {
    "none": [*MLP],
    "reference, alpha-reg 1": ["--variant", "reference", "--alpha-reg", "1", *MLP],
    "block, alpha-reg 1": ["--variant", "block", "--alpha-reg", "1", *MLP],
    "purity, alpha-reg 1": ["--variant", "purity", "--alpha-reg", "1", *MLP],
    "purity, alpha-reg 5": ["--variant", "purity", "--alpha-reg", "5", *MLP],
    "purity, alpha-reg 20": ["--variant", "purity", "--alpha-reg", "20", *MLP],
}
PURITY = ["--variant", "purity"]  # the former default, named: the rows below were measured with it
ON_BLOCK_HEAD = {  # the block head, with the former default and the option that weighs the worst class most
    "none, block head": [*BLOCK],
    "purity, block head, alpha-reg 1 (the former default)": [*PURITY, "--alpha-reg", "1", *BLOCK],
    "log-purity, block head, alpha-reg 1": ["--variant", "log-purity", "--alpha-reg", "1", *BLOCK],
}
SEARCH = {  # more knobs, on the fast backbone
    "purity, alpha-reg 5, 4 dims per class": [*PURITY, "--alpha-reg", "5", "--dims-per-class", "4", *MLP],
    "purity, alpha-reg 5, no shared dims": [*PURITY, "--alpha-reg", "5", "--head", "mlp", "--shared-dims", "0"],
    "purity, alpha-reg 5, linear head": [*PURITY, "--alpha-reg", "5", "--head", "linear", "--shared-dims", "2"],
    "purity, alpha-reg 20, ramp 6": [*PURITY, "--alpha-reg", "20", "--ramp", "6", *MLP],
    "purity, alpha-reg 5, 30 epochs": [*PURITY, "--alpha-reg", "5", "--epochs", "30", *MLP],
    "purity, block head, alpha-reg 5": [*PURITY, "--alpha-reg", "5", *BLOCK],
    "purity, block head, alpha-reg 5, warmup 3, ramp 4": [*PURITY, "--alpha-reg", "5", "--warmup", "3", "--ramp", "4",
                                                          *BLOCK],
    "purity, block head with 2 shared dims, alpha-reg 1": [*PURITY, "--alpha-reg", "1", "--head", "block",
                                                           "--shared-dims", "2"],
    "purity, block head, 4 dims per class, alpha-reg 1": [*PURITY, "--alpha-reg", "1", "--dims-per-class", "4", *BLOCK],
    "purity, block head, decoder + classifier Hessian (probes 4)": [*PURITY, "--alpha-reg", "1", "--decoder", "--wrt",
                                                                    "both", "--probes", "4", *BLOCK],
}

PURITY_SEARCH = {  # the efficacy issue's "no collapsed class", on the shipped block head
    "none": [*BLOCK],
    "purity (the former default)": ["--variant", "purity", "--alpha-reg", "1", *BLOCK],
    "log-purity": ["--variant", "log-purity", "--alpha-reg", "1", *BLOCK],
    "image-purity": ["--variant", "image-purity", "--alpha-reg", "1", *BLOCK],
    "image-purity, alpha-reg 2": ["--variant", "image-purity", "--alpha-reg", "2", *BLOCK],
    "image-purity, alpha-reg 3": ["--variant", "image-purity", "--alpha-reg", "3", *BLOCK],
    "image-purity, warmup 3, ramp 3": ["--variant", "image-purity", "--warmup", "3", "--ramp", "3", *BLOCK],
    "image-purity, warmup 2, ramp 4": ["--variant", "image-purity", "--warmup", "2", "--ramp", "4", *BLOCK],
    "dual-purity": ["--variant", "dual-purity", "--alpha-reg", "1", *BLOCK],
    "dual-purity, alpha-reg 3": ["--variant", "dual-purity", "--alpha-reg", "3", *BLOCK],
    "dual-purity, warmup 3, ramp 3": ["--variant", "dual-purity", "--warmup", "3", "--ramp", "3", *BLOCK],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a setting may train")
    parser.add_argument("--purity-search", action="store_true", help="the search for no collapsed class")
    args = parser.parse_args()
    settings = {**SETTINGS, **ON_BLOCK_HEAD, **({} if args.backbone == "resnet18" else SEARCH)}
    if args.purity_search:
        settings = PURITY_SEARCH
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, extra) in enumerate(settings.items()):
            reg = "none" if label.startswith("none") else "class"
            options = f"`{' '.join(['--reg', reg, *extra])}`"
            try:
                subprocess.run([sys.executable, "-m", "herd_cls", "train", "--reg", reg, "--seed", str(args.seed),
                                "--out-dir", tmp, "--name", str(i), "--quiet", "--backbone", args.backbone, *extra],
                               check=True, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.CalledProcessError as err:  # a failed setting is a result too
                reason = err.stderr.strip().splitlines()[-1].removeprefix("Error: ").replace(tmp, "<tmp>")
                rows.append([label, options, f"failed: {reason}", "", ""])
            except subprocess.TimeoutExpired:
                rows.append([label, options, f"did not finish in {args.timeout} s", "", ""])
            else:
                s = json.loads((Path(tmp) / str(i) / "summary.json").read_text())
                recon = f"{s['test_recon']:.4f}" if s["test_recon"] is not None else "–"
                cells = [f"{s['test_accuracy']:.4f}", recon, f"{s['block_purity']:.3f}"]
                if args.purity_search:
                    medians = s["image_purity_median_per_class"]
                    worst = min(range(len(medians)), key=medians.__getitem__)
                    cells = [cells[0], cells[2], f"{min(s['block_purity_per_class']):.3f}",
                             f"{medians[worst]:.3f} (class {worst})", str(s["purity_samples"])]
                rows.append([label, options, *cells])
            print(table_row(rows[-1]), flush=True)
    command = ("python scripts/compare_variants.py"
               + ("" if args.backbone == "resnet18" else f" --backbone {args.backbone}")
               + (" --purity-search" if args.purity_search else ""))
    columns = (["test accuracy", "block purity", "lowest class purity", "lowest class's median image", "test images"]
               if args.purity_search else ["test accuracy", "test recon MSE", "block purity"])
    md = (f"{args.backbone} on digits, seed {args.seed}, defaults otherwise; `{command}` at {provenance()}.\n\n"
          + markdown_table(["setting", "options", *columns], rows) + "\n")
    publish("compare_variants" + ("" if args.backbone == "resnet18" else f"_{args.backbone}")
            + ("_purity" if args.purity_search else ""), md)


if __name__ == "__main__":
    main()
