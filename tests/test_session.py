"""Building a training session: the device asked for, the resolved config and its run folder,
deterministic weights from the seed, and the run folders it refuses."""

import pytest
import torch

from herd_cls.config import Config, load_config
from herd_cls.registry import HerdError
from herd_cls.session import resolve_device, setup


def _cfg(tmp_path, **overrides) -> Config:
    """The tiny digits run of conftest.TINY, as a config."""
    return Config(
        dataset="digits",
        num_samples=300,
        image_size=16,
        backbone="conv",
        epochs=2,
        batch_size=32,
        out_dir=str(tmp_path / "runs"),
        **overrides,
    ).validate()


def test_devices_are_checked_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(HerdError, match="unknown device 'gpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(HerdError, match="CUDA is not available; use --device cpu"):
            resolve_device("cuda")


def test_setup_resolves_the_config_and_starts_the_run_folder(tmp_path):
    s = setup(_cfg(tmp_path, name="a", steps=10, device="cpu"))
    assert s.run_dir == tmp_path / "runs" / "a" and s.start_epoch == 0 and s.rows == []
    # 194 training images make 6 full batches of 32: 10 steps are 2 epochs
    assert (s.cfg.num_classes, s.cfg.image_size, s.cfg.epochs) == (10, 16, 2)
    assert s.cfg.alpha_reg == s.cfg.reg_weight and s.cfg.latent_dim == 20
    assert load_config(s.run_dir / "config.yaml") == s.cfg and (s.run_dir / "data.json").is_file()
    assert {split: len(loader.dataset) for split, loader in s.loaders.items()} == {
        "train": 194,
        "val": 45,
        "test": 61,
    }
    assert s.amp is None and not s.scaler.is_enabled()


def test_the_seed_fixes_the_initial_weights(tmp_path):
    first, second = (setup(_cfg(tmp_path, name=name, device="cpu")) for name in ("a", "b"))
    weights = first.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in second.model.state_dict().items())


def test_setup_refuses_a_taken_run_folder_and_one_with_nothing_to_resume(tmp_path):
    setup(_cfg(tmp_path, name="a", device="cpu"))
    with pytest.raises(HerdError, match="already exists; pick another --name or --resume"):
        setup(_cfg(tmp_path, name="a", device="cpu"))
    with pytest.raises(HerdError, match="nothing to resume at .*: no checkpoint.pt"):
        setup(_cfg(tmp_path, device="cpu"), resume=str(tmp_path / "runs" / "a"))
