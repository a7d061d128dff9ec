"""What a curvature method costs per batch: the reference heads it is timed on, the methods that
apply to each, the step training pays (curvature, penalty and backward), its extra peak memory and
the probe estimates' purity error against the exact Hessian.

    python -m herd_cls.benchmarking.curvature_cost HEAD D METHOD   # one step's extra peak MB
"""

from __future__ import annotations

import subprocess
import sys
from typing import Callable, Iterable, NamedTuple

import torch
from torch import Tensor, nn

from ..backbones import ConvDecoder
from ..block_curvature import block_head_masses, on_blocks
from ..curvature import block_mass, latent_hessian, method_names
from ..decoder_curvature import exact_masses
from ..derivatives import has_closed_form
from ..heads import BlockHead
from ..layout import BlockLayout
from ..losses import LOSSES, per_sample_loss
from .timing import interleaved_medians, reset_peak_memory, resident_memory_mb

BATCH = 64
# the largest d at which each head's exact and Gauss-Newton Hessians are timed (under seconds)
EXACT_LIMIT = {
    "linear + CE": 512,
    "MLP + CE": 128,
    "block head + CE": 128,
    "MLP decoder + MSE": 64,
    "conv decoder + MSE": 16,
}


class MethodCost(NamedTuple):
    """One method's step on one head: median seconds, seconds over plain's, extra peak MB (None
    where not measured) and its purity error (None for exact methods and d > 64)."""

    method: str
    seconds: float
    ratio: float
    peak_mb: float | None
    purity_error: float | None


def layout(d: int) -> BlockLayout:
    """Two class blocks and d % 2 shared dims: the penalty's blocks in every cell."""
    return BlockLayout.split(2, d - d % 2, d % 2)


def heads(d: int) -> dict[str, tuple[nn.Module, Tensor, str]]:
    """{name: (head on z (BATCH, d), its target, loss)}: classifiers with CE, decoders with MSE."""
    y, x = torch.randint(0, 10, (BATCH,)), torch.rand(BATCH, 1, 32, 32)
    return {
        "linear + CE": (nn.Linear(d, 10), y, "ce"),
        "MLP + CE": (nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, 10)), y, "ce"),
        "block head + CE": (BlockHead(layout(d)), y % 2, "ce"),
        "MLP decoder + MSE": (
            nn.Sequential(
                nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 1024), nn.Unflatten(1, (1, 32, 32))
            ),
            x,
            "mse",
        ),
        "conv decoder + MSE": (ConvDecoder(d, (1, 32, 32)), x, "mse"),
    }


def reference_hessian(head: nn.Module, z: Tensor, target: Tensor, loss: str) -> Tensor:
    """(B, d, d) as the original research code forms it: one autograd Hessian per sample."""
    from torch.autograd.functional import hessian

    fn = per_sample_loss(loss)
    return torch.stack(
        [
            hessian(lambda v: fn(head(v[None]), target[i : i + 1]).sum(), z[i], create_graph=True)
            for i in range(len(z))
        ]
    )


def penalty_step(
    method: str, head, target: Tensor, loss: str, d: int
) -> Callable[[Tensor], Tensor]:
    """z -> the scalar whose backward is what training pays with ``method`` for one batch: "plain"
    (the loss alone), "reference" (per-sample autograd), "masses" (the block head's exact masses
    without H), a probe method (its block masses) or a Hessian method (|H| summed)."""
    labels = torch.arange(len(target)) % 2
    region = layout(d).masks[labels]
    probed = method in method_names(probes=True)  # decided here, not in the timed step

    def step(z: Tensor) -> Tensor:
        if method == "plain":
            return per_sample_loss(loss)(head(z), target).sum()
        if method == "masses":
            inside, total = block_head_masses(head, z, target, labels, loss)
            return inside.sum() / total.sum()
        if probed:
            inside, total = block_mass(head, z, target, region, loss, method, probes=2)
            return inside.sum() / total.sum()
        if method == "reference":
            return reference_hessian(head, z, target, loss).abs().sum()
        return latent_hessian(head, z, target, loss, method).abs().sum()

    return step


def methods(name: str, head: nn.Module, loss: str, d: int) -> list[str]:
    """plain, the per-sample reference at small d, then every registered method that applies to the
    head and loss (exact and Gauss-Newton up to EXACT_LIMIT)."""
    small = d <= EXACT_LIMIT[name]
    reconstruction = LOSSES.get(loss).reconstruction
    applies = {
        "closed_form": has_closed_form(head, loss),
        "exact": small,
        "gauss_newton": small and reconstruction,
    }
    hessians = [m for m in method_names(probes=False) if applies.get(m, False)]
    reference = ["reference"] if d <= (16 if reconstruction else 32) else []
    masses = ["masses"] if on_blocks(head, layout(d)) else []
    return ["plain", *reference, *hessians, *masses, *method_names(probes=True)]


def purity_error(head, target: Tensor, loss: str, d: int, method: str) -> float | None:
    """|estimated - exact| squared-Frobenius purity of the batch's first d // 4 dims, at a z and
    8 probe pairs drawn from their own generators (seed 0); None for methods without probes and
    for d > 64."""
    if method not in method_names(probes=True) or d > 64:
        return None
    z = torch.randn(len(target), d, generator=torch.Generator().manual_seed(0))
    region = torch.zeros(len(target), d, dtype=torch.bool)
    region[:, : max(1, d // 4)] = True
    H = latent_hessian(head, z, target, loss, "exact").detach()
    exact_inside, exact_total = exact_masses(H.unsqueeze(1), region)
    exact = (exact_inside.sum() / exact_total.sum()).item()
    generator = torch.Generator().manual_seed(0)
    inside, total = block_mass(head, z, target, region, loss, method, probes=8, generator=generator)
    return abs(inside.detach().sum().item() / total.detach().sum().item() - exact)


def step_peak_mb(name: str, d: int, method: str) -> float:
    """Growth of this process's peak RSS (MB) over one step of ``method``, after a plain warm-up
    (Linux: the peak is reset through /proc/self/clear_refs just before the step)."""
    torch.manual_seed(0)
    head, target, loss = heads(d)[name]
    z = torch.randn(BATCH, d, requires_grad=True)
    penalty_step("plain", head, target, loss, d)(z).backward()
    reset_peak_memory()
    before = resident_memory_mb(peak=False)
    penalty_step(method, head, target, loss, d)(z).backward()
    return resident_memory_mb() - before


def peak_mb(name: str, d: int, method: str) -> float:
    """:func:`step_peak_mb` measured in a fresh process, so that no earlier step's peak counts."""
    command = [sys.executable, "-m", __name__, name, str(d), method]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"peak memory of {method} on {name} at d={d} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def costs_at(
    d: int, repeats: int, memory: bool, only: Iterable[str] | None = None
) -> dict[str, tuple[float, list[MethodCost]]]:
    """{head name: (plain's median seconds, the cost of every other method)} for each of
    :func:`heads` at ``d`` (or those named in ``only``): interleaved medians of ``repeats`` steps on
    a random z, the extra peak memory (in a fresh process, on the head rebuilt from seed 0) where
    ``memory``."""
    found = {}
    for name, (head, target, loss) in heads(d).items():
        z = torch.randn(BATCH, d, requires_grad=True)  # drawn for every head: one RNG order
        if only is not None and name not in only:
            continue
        names = methods(name, head, loss, d)
        steps = {m: penalty_step(m, head, target, loss, d) for m in names}
        seconds = interleaved_medians(
            {m: lambda step=step: step(z).backward() for m, step in steps.items()}, repeats
        )
        plain = seconds["plain"]
        found[name] = (
            plain,
            [
                MethodCost(
                    m,
                    seconds[m],
                    seconds[m] / plain,
                    peak_mb(name, d, m) if memory else None,
                    purity_error(head, target, loss, d, m),
                )
                for m in names[1:]
            ],
        )
    return found


if __name__ == "__main__":
    head_name, dim, step_method = sys.argv[1:4]
    print(step_peak_mb(head_name, int(dim), step_method))
