"""Issue 22: why universal HeRD collapses the shapes decoder, and which form stops it; and the original
work's own setting (configs/shapes_reference.yaml) against the plain autoencoder at that setting.

Every run is trained with the toolkit's trainer and scored as scripts/_efficacy_shapes.py scores the
thesis table (MIG, DCI-D, SAP against the five factors on 10000 fresh held-out shapes, recon BCE), plus
what issue 22 asks: test reconstruction in the run's own loss, live latent dims (decoder Jacobian column
norm within 10x of the largest, herd_cls.diagnostics), the Jacobian scale, the penalty's terms apart, the
collapse warning, and the per-epoch trajectory of those. Results go to reports/benchmark_decoder_research.json, keyed
by candidate, seed and budget; runs already there are skipped, so invocations can share the file.

python scripts/_decoder_research.py --candidates autoencoder "share (shipped)" --seeds 0 --steps 1000
python scripts/_decoder_research.py --reference --seeds 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _efficacy_shapes import COMMON, THESIS_BASE, held_out, thesis_scores  # noqa: E402
from _harness import ROOT, Job, ResultStore  # noqa: E402
from herd_cls import load_run  # noqa: E402
from herd_cls.config import load_config  # noqa: E402
from herd_cls.diagnostics import collapse_reasons, live_dims  # noqa: E402
from herd_cls.files import atomic_write  # noqa: E402
from herd_cls.train import train  # noqa: E402

UNIVERSAL = {"reg": "universal", "wrt": "autoencoder"}
CANDIDATES = {  # label -> overrides on the shapes benchmark (COMMON + THESIS_BASE)
    "autoencoder": {"reg": "none"},
    "share (shipped)": {**UNIVERSAL},
    "share-only": {**UNIVERSAL, "universal_form": "share-only"},
    "image-share": {**UNIVERSAL, "universal_form": "image-share"},
    "correlation": {**UNIVERSAL, "universal_form": "correlation"},
    "standardised": {**UNIVERSAL, "universal_form": "standardised"},
    "balanced": {**UNIVERSAL, "universal_form": "balanced"},
    "share, alpha_ae 1024 (pixel sum)": {**UNIVERSAL, "alpha_ae": 1024.0},
    "share, warm-up half the budget": {**UNIVERSAL, "warmup": "half"},
    # the "alpha_ae 1024" rows were run while HeRD's weight on a decoder was per pixel; the trainer now divides
    # the penalty by the pixel count, so they are today's default form and weight (not to be run again)
    "balanced, alpha_ae 1024 (pixel sum)": {**UNIVERSAL, "universal_form": "balanced", "alpha_ae": 1024.0},
    "correlation, alpha_ae 1024 (pixel sum)": {**UNIVERSAL, "universal_form": "correlation", "alpha_ae": 1024.0},
    "balanced, per-image weight (the default)": {**UNIVERSAL, "universal_form": "balanced"},
    "share-only, per-image weight": {**UNIVERSAL, "universal_form": "share-only"},
    "image-share, per-image weight": {**UNIVERSAL, "universal_form": "image-share"},
    "standardised, per-image weight": {**UNIVERSAL, "universal_form": "standardised"},
    "balanced, per-image weight, warm-up half the budget": {**UNIVERSAL, "universal_form": "balanced", "warmup": "half"},
}
WEIGHTS = {"x4": 4.0, "x16": 16.0}  # "<label> x4": the candidate at 4x its weight (the second target)
REFERENCE = ROOT / "configs" / "shapes_reference.yaml"
TRAJECTORY_KEYS = ("epoch", "penalty_ramp", "train_penalty", "val_recon", "decoder_jacobian_scale", "decoder_live_dims",
                   "decoder_live_dims_std_units", "penalty_offdiag_share", "penalty_diag_norm",
                   "penalty_image_offdiag_share", "penalty_correlation", "penalty_diag_imbalance")


# "d1" ends every key: bump it when training or scoring changes, so older saved runs are not mixed in
STORE = ResultStore(ROOT / "reports" / "benchmark_decoder_research.json", "d1")


def overrides_for(label: str, steps: int) -> dict:
    base, _, mult = label.partition(" x")
    over = dict(CANDIDATES[base])
    if over.get("warmup") == "half":
        over["warmup"] = max(1, steps // 2 // 152)   # 152 training batches an epoch at batch 128
    if mult:
        from herd_cls.regularizers import regularizer_class
        weight = over.get("alpha_reg") or regularizer_class(over["reg"]).default_weight
        over["alpha_reg"] = weight * float(mult)
    return over


def score(run_dir: Path, data) -> dict:
    run = load_run(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    return {**thesis_scores(run.model, data), "test_recon": run.summary["test_recon"],
            "recon_loss": run.config.recon_loss, "train_seconds": run.summary["train_seconds"],
            "collapse_warning": run.summary.get("decoder_collapse"),
            "live_dims": last["decoder_live_dims"], "live_dims_std_units": last["decoder_live_dims_std_units"],
            "jacobian_scale": last["decoder_jacobian_scale"], "jacobian_columns": last["decoder_jacobian_columns"],
            "blank_recon": last.get("blank_recon"),
            "trajectory": [{k: r.get(k) for k in TRAJECTORY_KEYS} for r in rows]}


def job(key: str, cfg_path, overrides: dict, data, record: dict) -> Job:
    """One training run of ``overrides`` (on the config file ``cfg_path``, if any), scored."""
    def measure(folder: Path) -> dict:
        cfg = load_config(cfg_path, {**overrides, "out_dir": str(folder.parent), "name": folder.name})
        t0 = time.perf_counter()
        run_dir = train(cfg, progress=False)
        return {**record, **score(run_dir, data), "wall_seconds": time.perf_counter() - t0, "overrides": overrides}

    return Job(key, overrides, measure)


def brief(key: str, r: dict) -> str:
    return f"{key} " + str({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                            if k in ("mig", "dci_disentanglement", "sap", "recon_bce", "test_recon", "live_dims",
                                     "wall_seconds", "collapse_warning")})


PLAIN_MIG_FLOOR = 0.097  # issue 22: the plain autoencoder's MIG in docs/efficacy.md (3 seeds, 3000 steps)
BEGIN, END = "<!-- decoder-research:begin -->", "<!-- decoder-research:end -->"


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else float("nan")


def chart(done: dict) -> str:
    """docs/images/decoder_collapse_terms.png: per epoch, for each seed-0 1000-step run, the off-diagonal share,
    the diagonal-norm term, live dims and validation reconstruction; returns the markdown that shows it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = {r["candidate"]: r["trajectory"] for r in done.values() if r["seed"] == 0 and isinstance(r["steps"], int)}
    if not runs:
        return ""
    panels = [("penalty_offdiag_share", "off-diagonal share of mean |H|"), ("penalty_diag_norm", "||diag(mean |H|)|| / d"),
              ("decoder_live_dims", "live dims (raw z units)"), ("val_recon", "validation recon (BCE)")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, (key, title) in zip(axes, panels):
        for label, t in runs.items():
            ax.plot([row["epoch"] for row in t], [row[key] for row in t], marker="o", ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch (152 steps)")
        if key == "penalty_diag_norm":
            ax.set_yscale("symlog", linthresh=1e-5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "docs" / "images" / "decoder_collapse_terms.png"
    fig.savefig(out, dpi=90)
    return "![per-epoch terms](images/decoder_collapse_terms.png)\n\n"


def drivers(done: dict) -> str:
    """For each HeRD run: the first epoch with the penalty on, against the last warm-up epoch: the penalty's
    terms, live dims and reconstruction, so the term that moved with the collapse can be read off."""
    out = []
    for key, r in sorted(done.items()):
        t = r["trajectory"]
        on = next((i for i, row in enumerate(t) if row["penalty_ramp"]), None)
        if on is None or on == 0 or r["overrides"].get("reg") == "none":
            continue
        a, b = t[on - 1], t[on]
        out.append(f"- {key}: epoch {a['epoch']} -> {b['epoch']}: off-diagonal share {a['penalty_offdiag_share']:.3f} -> "
                   f"{b['penalty_offdiag_share']:.3f}, diagonal norm {a['penalty_diag_norm']:.2g} -> "
                   f"{b['penalty_diag_norm']:.2g}, live dims {a['decoder_live_dims']} -> {b['decoder_live_dims']} "
                   f"(std units {a['decoder_live_dims_std_units']} -> {b['decoder_live_dims_std_units']}), val recon "
                   f"{a['val_recon']:.4f} -> {b['val_recon']:.4f}")
    return ("## The first epoch with the penalty on (from the per-epoch rows)\n\n" + "\n".join(out) + "\n\n") if out else ""


def verdicts(groups: dict) -> str:
    """Each HeRD candidate against issue 22's targets, next to the plain autoencoder at the same budget and
    seeds (the issue's targets are for 3 seeds at 3000 steps: a different budget is said so)."""
    out = []
    for (cand, steps), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        if not isinstance(steps, int) or cand == "autoencoder" or ("autoencoder", steps) not in groups:
            continue
        seeds = {r["seed"] for r in rs}
        plain = [r for r in groups[("autoencoder", steps)] if r["seed"] in seeds]  # the same seeds
        if not plain:
            continue
        ratio = [r["recon_bce"] / _mean(plain, "recon_bce") for r in rs]
        live = [r["live_dims"] for r in rs]
        mig, pmig = _mean(rs, "mig"), _mean(plain, "mig")
        ok = lambda b: "met" if b else "NOT MET"  # noqa: E731
        out.append(f"- **{cand}** ({steps} steps, {len(rs)} seed(s); plain autoencoder {len(plain)} seed(s)): recon "
                   f"{', '.join(f'{x:.2f}x' for x in ratio)} the plain AE's (<= 1.5x in every seed: "
                   f"{ok(max(ratio) <= 1.5)}); live dims {live} (>= 5: {ok(min(live) >= 5)}); MIG {mig:.3f} vs "
                   f"the plain AE's {pmig:.3f} at this budget (at or above it: {ok(mig >= pmig)}; >= "
                   f"{PLAIN_MIG_FLOOR}: {ok(mig >= PLAIN_MIG_FLOOR)}; goal 0.3: {ok(mig >= 0.3)}); DCI-D "
                   f"{_mean(rs, 'dci_disentanglement'):.3f} vs {_mean(plain, 'dci_disentanglement'):.3f}, SAP "
                   f"{_mean(rs, 'sap'):.3f} vs {_mean(plain, 'sap'):.3f}.")
    return ("## Against issue 22's targets (computed)\n\n" + "\n".join(out) + "\n\n") if out else ""


def publish() -> None:
    """docs/decoder_research.md (every measured group: candidate x budget, means over seeds) and the block
    between the markers in docs/what-did-not-work.md, all from reports/benchmark_decoder_research.json."""
    done = {key.rsplit(" | ", 1)[0]: r for key, r in STORE.load().items()}  # the protocol tag is not shown
    for r in done.values():  # recounted with the floor added after the first runs (a dead decoder has no live dim)
        r["live_dims"] = live_dims(r["jacobian_columns"])
        if r["jacobian_scale"] <= 1e-6:
            r["live_dims_std_units"] = 0
        t = r["trajectory"]  # the collapse test of herd_cls.train, recomputed on the per-epoch rows
        r["collapsed_at_end"] = bool(collapse_reasons(t[-1]["val_recon"], r["blank_recon"], t[-1]["decoder_jacobian_scale"],
                                                      t[0]["decoder_jacobian_scale"]))
        r["collapse_seen"] = any(collapse_reasons(row["val_recon"], r["blank_recon"], row["decoder_jacobian_scale"],
                                                  t[0]["decoder_jacobian_scale"]) for row in t[1:])
    groups: dict[tuple, list[dict]] = {}
    for key, r in done.items():
        groups.setdefault((r["candidate"], r["steps"]), []).append(r)
    head = ("| candidate | budget | seeds | MIG | DCI-D | SAP | recon BCE (held-out) | test recon (own loss) | "
            "blank level | live dims (raw / std units) | Jacobian scale | collapsed at the end / seen after warm-up | train s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for (cand, steps), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        budget = f"{steps} steps" if isinstance(steps, int) else f"{steps} of 10000 shapes (reference)"
        end, seen = sum(r["collapsed_at_end"] for r in rs), sum(r["collapse_seen"] for r in rs)
        lines.append(f"| {cand} | {budget} | {len(rs)} | {_mean(rs, 'mig'):.3f} | {_mean(rs, 'dci_disentanglement'):.3f} | "
                     f"{_mean(rs, 'sap'):.3f} | {_mean(rs, 'recon_bce'):.4f} | {_mean(rs, 'test_recon'):.4f} "
                     f"({rs[0]['recon_loss']}) | {_mean(rs, 'blank_recon'):.4f} | {_mean(rs, 'live_dims'):.1f} / "
                     f"{_mean(rs, 'live_dims_std_units'):.1f} | {_mean(rs, 'jacobian_scale'):.3g} | {end}/{len(rs)} / {seen}/{len(rs)} | "
                     f"{_mean(rs, 'train_seconds'):.0f} |")
    traj = []
    for key, r in sorted(done.items()):
        t = r["trajectory"]
        pick = [row for row in t if row["epoch"] in {1, 2, 3, 4, len(t) // 2, len(t)}]
        traj.append(f"**{key}**\n\n| epoch | ramp | train penalty | val recon | Jacobian scale | live dims | off-diag share | "
                    "diag norm | image off-diag share | correlation | diag imbalance |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
                    + "\n".join(f"| {row['epoch']} | {row['penalty_ramp']:.2f} | {row['train_penalty']:.4f} | "
                                 f"{row['val_recon']:.4f} | {row['decoder_jacobian_scale']:.3g} | {row['decoder_live_dims']} | "
                                 f"{row['penalty_offdiag_share']:.3f} | {row['penalty_diag_norm']:.3g} | "
                                 f"{row['penalty_image_offdiag_share']:.3f} | {row['penalty_correlation']:.3f} | "
                                 f"{row['penalty_diag_imbalance']:.3f} |" for row in pick))
    md = ("# Decoder research (issue 22): generated by `python scripts/_decoder_research.py --publish` from "
          "reports/benchmark_decoder_research.json; do not edit by hand\n\n"
          "Shapes benchmark (Burgess AE, BCE, batch 128, lr 1e-3, d = 10, 32 penalty samples) unless the row is the "
          "reference setting (configs/shapes_reference.yaml). Live dims: decoder Jacobian column norm within 10x of "
          "the largest (raw z units; 'std units' multiplies each column by the dim's std of z). Blank level: the "
          "run's own loss when predicting the training mean image. Scores on 10000 fresh held-out shapes. "
          f"Issue 22 targets: recon within 1.5x of the plain AE, >= 5 live dims, MIG >= {PLAIN_MIG_FLOOR} "
          "(goal 0.3). Rows without 'per-image weight' or 'alpha_ae 1024' in their label weighed the penalty against "
          "the per-pixel-mean reconstruction (before the trainer divided it by the pixel count); the 'alpha_ae 1024' "
          "rows are today's per-image weighting reached the other way (Adam is invariant to the loss's scale).\n\n" + head + "\n".join(lines) + "\n\n" + verdicts(groups) + chart(done) + drivers(done)
          + "## Per-epoch terms (selected epochs; the fixed 64-image validation batch, Gauss-Newton curvature)\n\n"
          + "\n\n".join(traj) + "\n")
    atomic_write(ROOT / "docs" / "decoder_research.md", md)
    notes = ROOT / "docs" / "what-did-not-work.md"
    text = notes.read_text()
    block = (f"{BEGIN}\n## Universal HeRD on the shapes decoder (issue 22), measured\n\n"
             "Generated from reports/benchmark_decoder_research.json (tables and per-epoch terms: "
             "[decoder_research.md](decoder_research.md)).\n\n" + head + "\n".join(lines) + "\n\n"
             + verdicts(groups) + f"{END}")
    text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):] if BEGIN in text else text.rstrip() + "\n\n" + block + "\n"
    atomic_write(notes, text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--candidates", nargs="+", default=[], help=f"labels of {list(CANDIDATES)}, optionally + ' x4' or ' x16'")
    p.add_argument("--reference", action="store_true", help="the original setting and the plain AE at it")
    p.add_argument("--reference-epochs", type=int, default=10, help="the reference's budget (the original: 10)")
    p.add_argument("--reference-only", nargs="+", help="only the reference rows whose labels start so")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--publish", action="store_true", help="only write the docs from the results file")
    a = p.parse_args()
    if a.publish:
        publish()
        return
    torch.set_num_threads(a.threads)
    data, jobs = held_out(), []
    for seed in a.seeds:
        if a.reference:
            # the BCE rows change one thing (MSE saturates the sigmoid decoder at the blank image on shapes);
            # for a ReLU decoder with a sigmoid output and BCE, the Gauss-Newton matrix is the exact Hessian
            bce = {"recon_loss": "bce", "hessian_method": "gauss_newton"}
            for label, over in (("reference: universal HeRD (original setting)", {}),
                                ("reference: plain autoencoder (same setting)", {"reg": "none"}),
                                ("reference with BCE: universal HeRD", bce),
                                ("reference with BCE: plain autoencoder", {**bce, "reg": "none"})):
                if a.reference_only and not any(label.startswith(r) for r in a.reference_only):
                    continue
                jobs.append(job(STORE.key(label, f"seed {seed}", f"{a.reference_epochs} epochs of 10000 shapes"),
                                REFERENCE, {**over, "seed": seed, "epochs": a.reference_epochs}, data,
                                {"candidate": label, "seed": seed, "steps": f"{a.reference_epochs} epochs",
                                 "config": "configs/shapes_reference.yaml"}))
        for label in a.candidates:
            over = {**COMMON, **THESIS_BASE, **overrides_for(label, a.steps), "steps": a.steps, "seed": seed}
            jobs.append(job(STORE.key(label, f"seed {seed}", f"steps {a.steps}"), None, over, data,
                            {"candidate": label, "seed": seed, "steps": a.steps}))
    STORE.fill(jobs, brief)


if __name__ == "__main__":
    main()
