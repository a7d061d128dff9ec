"""A post-hoc decoder: images from the latents of a frozen encoder, so runs trained without a
decoder can still show what a latent dim means in pixels. Fitted once, cached in the run folder
beside the model, and always labelled as post-hoc (it explains the encoder; it was not trained with
it)."""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..files import atomic_write
from .latents import collect

WEIGHTS = "posthoc_decoder.safetensors"
INFO = "posthoc_decoder.json"
VERSION = 3  # bump when the architecture or the fit changes, so old caches are refitted


class MLPDecoder(nn.Module):
    """z (B, d) -> image (B, C, H, W) in [0, 1] through two hidden layers: a few seconds to fit on a
    CPU."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], hidden: int = 256):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, int(torch.tensor(out_shape).prod())),
        )

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.net(z)).view(len(z), *self.out_shape)


def fit_decoder(
    z: Tensor,
    x: Tensor,
    z_test: Tensor,
    x_test: Tensor,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress=None,
) -> tuple[nn.Module, dict]:
    """Fit an :class:`MLPDecoder` z (N, d) -> x (N, C, H, W) by MSE with Adam; report its test MSE.

    Returns the decoder (eval mode) and {"test_mse", "mean_image_mse" (predicting the mean training
    image, for scale), "steps", "seconds"}.
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = MLPDecoder(z.shape[1], tuple(x.shape[1:]))
    # whitened inputs: any encoder's scale fits one lr
    mean, std = (
        z.mean(0),
        z.std(0).clamp_min(1e-6),
    )
    net = _Whitened(decoder, mean, std)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        idx = torch.randint(0, len(z), (min(batch_size, len(z)),), generator=gen)
        loss = F.mse_loss(net(z[idx]), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress()
    net.eval()
    with torch.no_grad():
        test_mse = float(F.mse_loss(net(z_test), x_test))
        mean_mse = float(F.mse_loss(x.mean(0, keepdim=True).expand_as(x_test), x_test))
    return net, {
        "test_mse": test_mse,
        "mean_image_mse": mean_mse,
        "steps": steps,
        "seconds": time.perf_counter() - t0,
    }


class _Whitened(nn.Module):
    """z -> decoder((z - mean) / std)."""

    def __init__(self, decoder: nn.Module, mean: Tensor, std: Tensor):
        super().__init__()
        self.decoder = decoder
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder((z - self.mean) / self.std)


def posthoc_decoder(run, progress=None) -> tuple[nn.Module, dict]:
    """The run's post-hoc decoder and its info: read from the run folder, or fitted on the training
    split's latents (tested on the test split's) and saved there atomically on first use."""
    from safetensors.torch import load_file, save

    info_path, weights_path = run.path / INFO, run.path / WEIGHTS
    x_shape = tuple(run.data("test")[0][0].shape)
    template = _Whitened(
        MLPDecoder(run.layout.latent_dim, x_shape),
        torch.zeros(run.layout.latent_dim),
        torch.ones(run.layout.latent_dim),
    )
    try:
        info = json.loads(info_path.read_text())
        if info.get("version") == VERSION:
            template.load_state_dict(load_file(weights_path))
            return template.eval(), info
    except Exception:  # a missing, stale or damaged cache is refitted, never fatal
        pass
    train, test = collect(run.model, run.data("train")), collect(run.model, run.data("test"))
    decoder, info = fit_decoder(train["z"], train["x"], test["z"], test["x"], progress=progress)
    info["version"] = VERSION
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    try:
        atomic_write(weights_path, save(state))
        atomic_write(info_path, json.dumps(info, indent=2) + "\n")
    except OSError:  # a read-only run folder: fit again next time
        pass
    return decoder, info
