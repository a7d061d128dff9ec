"""Per-epoch health of a decoder: its Jacobian scale, its live latent dims, the universal penalty's
terms apart, and the collapse warning (issue 22).

Everything is measured on one fixed batch (the first images of the validation split), with the
forward (Gauss-Newton) curvature of the run's reconstruction loss, so epochs compare like with like.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .derivatives import forward_gauss_newton, forward_jacobian
from .losses import per_sample_loss
from .regularizers.herd_penalty import universal_terms

DIAGNOSTIC_SAMPLES = 64
# a dim is live when its decoder Jacobian column norm is within 10x of the largest
LIVE_RATIO = 10.0
LIVE_FLOOR = 1e-6  # ... and above this: a decoder whose every column is 0 has no live dim
# the Jacobian scale falling this far below its end-of-warm-up value is a collapse
COLLAPSE_SCALE_DROP = 100.0


def live_dims(columns) -> int:
    """How many Jacobian column norms are within LIVE_RATIO of the largest (and above
    LIVE_FLOOR)."""
    columns = torch.as_tensor(columns, dtype=torch.float64)
    return int(((columns * LIVE_RATIO >= columns.max()) & (columns > LIVE_FLOOR)).sum())


@torch.no_grad()
def decoder_diagnostics(model, x: Tensor, recon_loss: str) -> dict:
    """For images ``x`` (B, C, H, W): ``decoder_jacobian_scale`` (mean over images of ||J_i||_F, J_i
    the decoder's Jacobian at z_i), ``decoder_jacobian_columns`` (per latent dim, the mean over
    images of ||J_i e_j||), ``decoder_live_dims`` (columns within LIVE_RATIO of the largest),
    ``decoder_live_dims_std_units`` (the same count with each column times the dim's std of z, so a
    rescaled dim is not counted as dead) and the universal penalty's terms on the Gauss-Newton
    matrices of the reconstruction loss (``penalty_offdiag_share``, ``penalty_diag_norm``, ...)."""
    was_training = model.training
    model.eval()
    z = model.encode(x).float()
    _, (jac,) = forward_jacobian(model.decode, z)  # (d, B, C, H, W)
    per_column = jac.flatten(2).norm(dim=2)  # (d, B)
    columns = per_column.mean(1)
    scaled = columns * z.std(0)
    H = forward_gauss_newton(model.decode, z, recon_loss)
    terms = {f"penalty_{k}": float(v) for k, v in universal_terms(H).items()}
    out = {
        "decoder_jacobian_scale": float(per_column.pow(2).sum(0).sqrt().mean()),
        "decoder_jacobian_columns": columns.tolist(),
        "decoder_live_dims": live_dims(columns),
        "decoder_live_dims_std_units": live_dims(scaled),
        "diagnostic_recon": float(per_sample_loss(recon_loss)(model.decode(z).float(), x).mean()),
        **terms,
    }
    model.train(was_training)
    return out


def blank_recon(mean_image: Tensor, images: Tensor, recon_loss: str) -> float:
    """The reconstruction loss of predicting the data set's mean image for every image: the level at
    which a decoder that ignores z sits."""
    pred = mean_image.clamp(1e-6, 1 - 1e-6).expand_as(images)
    return float(per_sample_loss(recon_loss)(pred, images).mean())


def collapse_reasons(
    recon: float | None, blank: float | None, scale: float | None, warm_scale: float | None
) -> list[str]:
    """Why a decoder counts as collapsed (empty when it does not): reconstruction at or above the
    blank-image level (within 5%), or the Jacobian scale COLLAPSE_SCALE_DROP x below its
    end-of-warm-up value."""
    reasons = []
    if recon is not None and blank is not None and recon >= 0.95 * blank:
        reasons.append(
            f"reconstruction {recon:.4g} has reached the blank-image level {blank:.4g} (predicting "
            "the mean image)"
        )
    if (
        scale is not None
        and warm_scale is not None
        and warm_scale > 0
        and scale * COLLAPSE_SCALE_DROP < warm_scale
    ):
        reasons.append(
            f"the decoder's Jacobian scale {scale:.3g} fell over {COLLAPSE_SCALE_DROP:g}x below "
            f"its end-of-warm-up value {warm_scale:.3g}"
        )
    return reasons


def decoder_probe(val_set, train_set, device, recon_loss: str) -> tuple[Tensor, float]:
    """(the fixed diagnostic batch of validation images, the blank-image reconstruction level of the
    validation images against the training mean image) of a decoder run."""
    mean_image = (
        torch.stack([train_set[i][0] for i in range(min(2000, len(train_set)))]).mean(0).to(device)
    )
    images = torch.stack([val_set[i][0] for i in range(min(1000, len(val_set)))]).to(device)
    return images[:DIAGNOSTIC_SAMPLES], blank_recon(mean_image, images, recon_loss)


def check_collapse(rows: list[dict], warmup: int, blank: float, final: bool = False) -> list[str]:
    """After warm-up, whether the decoder of the last epoch's metrics row counts as collapsed: the
    row gets ``blank_recon``, ``collapsed`` and ``collapse_reasons``; returns the reasons (empty
    when it did not).

    Every decoder starts on the blank-image plateau, so reconstruction at the blank level counts
    only once the decoder has left it (an earlier epoch below 0.9x the blank level) or at the
    ``final`` epoch."""
    row = rows[-1]
    row["blank_recon"] = blank
    if row["epoch"] <= warmup:
        return []
    warm = next(
        (r.get("decoder_jacobian_scale") for r in rows if r["epoch"] == max(warmup, 1)), None
    )
    drew = any((r.get("val_recon") or blank) < 0.9 * blank for r in rows[:-1])
    recon = row.get("val_recon") if drew or final else None
    reasons = collapse_reasons(recon, blank, row.get("decoder_jacobian_scale"), warm)
    row["collapsed"], row["collapse_reasons"] = bool(reasons), reasons
    return reasons
