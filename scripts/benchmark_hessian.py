"""Cost of each latent-Hessian path against a plain forward+backward of the same head.

Heads: a linear classifier (closed form vs exact), an MLP classifier (exact vs probes) and a
ReLU decoder to 32x32 pixels (exact vs Gauss-Newton vs probes), batch 64, at several latent sizes.
Writes reports/benchmark_hessian.md and the matching README block.

    python scripts/benchmark_hessian.py [--dims 16 64 512] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from _provenance import provenance, publish
from herd_cls.regularizer import hessian_block_mass, latent_hessian, per_sample_loss


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 64, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for d in args.dims:
        b = args.batch
        y, x = torch.randint(0, 10, (b,)), torch.rand(b, 1024)
        heads = {
            "linear + CE": (nn.Linear(d, 10), y, "ce", ["closed_form", "exact"]),
            "MLP + CE": (nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, 10)), y, "ce", ["exact"]),
            "ReLU decoder + MSE": (nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 1024)), x, "mse",
                                   ["gauss_newton", "exact"]),
        }
        for name, (head, target, loss, methods) in heads.items():
            z = torch.randn(b, d, requires_grad=True)
            plain = timed(lambda: per_sample_loss(loss)(head(z), target).sum().backward(), args.repeats)
            cells = []
            for method in methods:
                if method == "exact" and d > 128 and name != "linear + CE":
                    cells.append("exact skipped")  # d HVPs of a wide latent: what probes are for
                    continue
                ms = timed(lambda: latent_hessian(head, z, target, loss, method).sum().backward(), args.repeats)
                cells.append(f"{method} {ms:.1f}")
            region = torch.zeros(b, d, dtype=torch.bool)
            region[:, : max(1, d // 10)] = True
            ms = timed(lambda: sum(hessian_block_mass(head, z, target, region, loss, probes=2)).sum().backward(),
                       args.repeats)
            cells.append(f"probes(k=2) {ms:.1f}")
            rows.append(f"| {d} | {name} | {plain:.1f} | {' · '.join(cells)} |")
    md = (f"Milliseconds per batch of {args.batch} (forward, Hessian and backward through it), mean "
          f"of {args.repeats} runs; `python scripts/benchmark_hessian.py` at {provenance()}.\n\n"
          "| d | head | plain fwd+bwd ms | Hessian path ms |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    publish("benchmark_hessian", md)


if __name__ == "__main__":
    main()
