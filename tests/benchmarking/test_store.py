"""herd_cls.benchmarking.store: the result store resumes and refuses stale settings; a
benchmark's spec is plain data."""

import pytest
import torch

from herd_cls.benchmarking import store as benchmarking
from herd_cls.benchmarking import Job, ResultStore


def test_store_resumes_and_refuses_stale_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarking, "commit", lambda: "abc")
    store = ResultStore(tmp_path / "r.json", "p1")
    calls = []

    def job(seed, settings):
        return Job(
            store.key("row", f"seed {seed}"),
            settings,
            lambda folder: calls.append(seed) or {"setting": "row", "v": seed},
        )

    store.fill([job(0, {"a": 1}), job(1, {"a": 1})])
    store.fill([job(0, {"a": 1}), job(1, {"a": 1})])  # finished: skipped
    assert calls == [0, 1] and list(store.load()) == ["row | seed 0 | p1", "row | seed 1 | p1"]
    assert store.load()["row | seed 0 | p1"]["commit"] == "abc"
    assert [r["v"] for r in store.runs([job(1, {"a": 1}), job(0, {"a": 1})])] == [0, 1]
    assert store.runs([job(0, {"a": 2})]) == []  # changed settings: not reused
    store.fill([job(0, {"a": 2})])
    assert calls == [0, 1, 0]


def test_store_reads_records_saved_without_a_fingerprint(tmp_path):
    store = ResultStore(tmp_path / "r.json", "p1")
    store.path.write_text('{"x | p1": {"setting": "x", "commit": "c"}}')
    job = Job("x | p1", {"anything": 1}, lambda folder: {})
    assert store.runs([job]) == [{"setting": "x", "commit": "c"}]


def test_a_spec_is_read_as_plain_data(tmp_path, monkeypatch):
    """A spec file is safe_load-ed: a tag that would build a Python object is refused."""
    import yaml

    (tmp_path / "configs" / "benchmarks").mkdir(parents=True)
    monkeypatch.setattr(benchmarking, "ROOT", tmp_path)
    (tmp_path / "configs" / "benchmarks" / "b.yaml").write_text("rows: {none: {reg: none}}\n")
    assert benchmarking.spec("b") == {"rows": {"none": {"reg": "none"}}}
    (tmp_path / "configs" / "benchmarks" / "b.yaml").write_text(
        "x: !!python/object/apply:os.getcwd []\n"
    )
    with pytest.raises(yaml.constructor.ConstructorError):
        benchmarking.spec("b")


def test_the_commit_stamp_counts_changed_code_and_not_the_published_pages(tmp_path, monkeypatch):
    import subprocess

    from herd_cls.benchmarking import store

    git = lambda *a: subprocess.run(
        ["git", "-C", str(tmp_path), *a], check=True, capture_output=True
    )
    for path in ("herd_cls/a.py", "docs/a.md", "README.md"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(store, "ROOT", tmp_path)
    monkeypatch.delenv("BENCH_COMMIT", raising=False)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "docs/a.md").write_text("a table\n")
    (tmp_path / "README.md").write_text("a summary\n")
    assert store.commit() == head
    (tmp_path / "herd_cls/a.py").write_text("y\n")
    assert store.commit() == head + "+uncommitted changes"


def test_built_model_is_the_untrained_model_a_config_describes():
    import torch

    from herd_cls.registry import HerdError

    overrides = {"backbone": "conv", "dims_per_class": 2, "shared_dims": 1}
    torch.manual_seed(0)
    cfg, model = benchmarking.built_model(overrides, num_classes=3, in_chans=1, image_size=16)
    assert cfg.latent_dim == 7 and model.layout.num_classes == 3  # dims resolved from the classes
    z = model.encode(torch.rand(2, 1, 16, 16))
    assert z.shape == (2, 7) and model.classify(z).shape == (2, 3)
    torch.manual_seed(0)
    again = benchmarking.built_model(overrides, num_classes=3, in_chans=1, image_size=16)[1]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(HerdError, match="dims_per_class|dims-per-class"):
        benchmarking.built_model({**overrides, "dims_per_class": 0}, 3, 1, 16)


def test_training_step_trains_the_built_model_with_its_regularizer_at_full_weight():
    from herd_cls.objective import batch_losses
    from herd_cls.regularizers import create_regularizer

    overrides = {"backbone": "conv", "reg": "class"}
    torch.manual_seed(0)
    step = benchmarking.training_step(overrides, "cpu", 8, 32, False, False)
    first, second = step(), step()
    # the same model, regularizer and batch from the same seed: the objective at weight 1, not 0.5
    torch.manual_seed(0)
    cfg, model = benchmarking.built_model(overrides, 10, 3, 32)
    reg = create_regularizer(cfg, model, 10_000)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss = lambda weight: batch_losses(model, cfg, x, y, None, reg, weight)["loss"]
    torch.testing.assert_close(first["loss"], loss(1.0))
    assert not torch.allclose(first["loss"], loss(0.5))
    assert not torch.equal(first["loss"], second["loss"])  # the optimiser moved the weights
    plain = benchmarking.training_step(
        {"backbone": "conv", "reg": "none"}, "cpu", 8, 32, False, False
    )
    out = plain()
    assert out["penalty"] is None and torch.equal(out["loss"], out["ce"])


def test_training_step_feeds_a_burgess_autoencoder_grey_images_of_at_most_64_pixels():
    overrides = {"backbone": "burgess", "decoder": True, "recon_loss": "bce", "latent_dim": 10}
    out = benchmarking.training_step({**overrides, "shared_dims": 0}, "cpu", 4, 224, False, False)()
    assert out["batch"].x.shape == (4, 1, 64, 64)
    assert torch.isfinite(out["recon"])


def test_throughputs_time_none_then_the_regularised_overrides_each_from_seed_0(monkeypatch):
    from herd_cls.benchmarking import timing

    built = []

    def training_step(overrides, device, batch, size, amp, compiled):
        built.append((overrides, torch.randint(0, 10**6, ()).item(), device, batch, size, compiled))
        return lambda: None

    rates = iter([(100.0, 50.0), (40.0, 80.0)])
    monkeypatch.setattr(benchmarking, "training_step", training_step)
    monkeypatch.setattr(timing, "images_per_second", lambda step, batch, steps, device: next(rates))
    regularised = {"reg": "class", "wrt": "both"}
    out = benchmarking.throughputs({"backbone": "conv"}, regularised, "cpu", 4, 32, True, True, 3)
    assert out == {"none": (100.0, 50.0), "class": (40.0, 80.0)}
    assert [b[0] for b in built] == [
        {"backbone": "conv", "reg": "none"},
        {"backbone": "conv", "reg": "class", "wrt": "both"},
    ]
    assert built[0][1] == built[1][1]  # the same random state: both models from seed 0
    assert built[0][2:] == ("cpu", 4, 32, True)
