"""herd_cls.benchmarking.command_cost: what each cost measurement runs, in which order, and what it
reads back, with herd-cls replaced by a stand-in that records its calls and writes what train
writes."""

import json
import os
from pathlib import Path

import pytest

from herd_cls.benchmarking import command_cost
from herd_cls.benchmarking.timing import Finished


@pytest.fixture
def herd_cli(monkeypatch):
    """Record every herd-cls call; ``train`` writes a summary.json whose train_seconds is the next
    of ``seconds``, and every call takes the next of ``seconds``."""
    calls, seconds = [], []

    def fake(*args, quiet=False, processes=1):
        args = [str(a) for a in args]
        calls.append(args)
        took = seconds.pop(0)
        if args[0] == "train":
            folder = Path(args[args.index("--out-dir") + 1]) / args[args.index("--name") + 1]
            folder.mkdir(parents=True)
            reg = args[args.index("--reg") + 1]
            summary = {"train_seconds": took, "reg": reg, "name": folder.name}
            (folder / "summary.json").write_text(json.dumps(summary))
        return Finished(took, 100.0)

    monkeypatch.setattr(command_cost, "herd_cli", fake)
    return calls, seconds


def test_training_cost_interleaves_none_and_regularised_and_takes_medians(herd_cli, tmp_path):
    calls, seconds = herd_cli
    seconds += [10.0, 30.0, 14.0, 18.0, 12.0, 90.0]  # none, class, none, class, none, class
    cost = command_cost.training_cost(["--backbone", "conv"], 3, tmp_path)
    assert [c[c.index("--reg") + 1] for c in calls] == ["none", "class"] * 3
    assert all(c[:3] == ["train", "--backbone", "conv"] for c in calls)
    assert (cost.none_seconds, cost.regularised_seconds) == (12.0, 30.0)
    assert cost.ratio == pytest.approx(2.5)
    assert cost.summary == {"train_seconds": 30.0, "reg": "class", "name": "class-0"}


def test_command_seconds_removes_the_fitted_decoder_before_each_fresh_run(herd_cli, tmp_path):
    calls, seconds = herd_cli
    seconds += [5.0, 7.0, 3.0, 2.0]
    cached = tmp_path / "posthoc_decoder.pt"
    cached.write_text("fitted")
    assert command_cost.command_seconds(["sweep", "--class", "3"], tmp_path, 2) == [5.0, 7.0]
    assert cached.exists()  # kept: later sweeps reuse it
    assert calls[0] == ["sweep", "--class", "3", "--run", str(tmp_path)]
    assert command_cost.command_seconds(["sweep"], tmp_path, 2, fresh=True) == [3.0, 2.0]
    assert not cached.exists()


def test_class_scaling_writes_k_classes_trains_then_times_the_report_and_the_second_sweep(
    herd_cli, tmp_path
):
    calls, seconds = herd_cli
    seconds += [60.0, 20.0, 9.0, 4.0]  # train, report, first sweep, timed sweep
    timed = command_cost.class_scaling(3, tmp_path, per_class=2, size=8)
    assert [c[0] for c in calls] == ["train", "report", "sweep", "sweep"]
    data = Path(calls[0][calls[0].index("--data-root") + 1])
    assert [len(list(c.iterdir())) for c in sorted(data.iterdir())] == [2, 2, 2]  # per class
    assert (timed.classes, timed.report.seconds, timed.sweep.seconds) == (3, 20.0, 4.0)
    assert timed.files == 0  # the stand-in writes no report


def test_distributed_cost_alternates_1_and_2_processes_with_half_the_batch_and_compares_them(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("WORLD_SIZE", "4")  # a launcher's variable would misdirect the runs
    calls, results = (
        [],
        {  # (processes, run): (seconds, accuracy, purity)
            (1, 0): (40.0, 0.98, 0.70),
            (2, 0): (25.0, 0.975, 0.74),
            (1, 1): (50.0, 0.97, 0.71),
            (2, 1): (35.0, 0.96, 0.69),
        },
    )

    def train_summary(options, reg, folder, processes=1):
        calls.append((options[options.index("--batch-size") + 1], reg, folder.name, processes))
        seconds, accuracy, purity = results[(processes, int(folder.name[-1]))]
        return {"train_seconds": seconds, "test_accuracy": accuracy, "block_purity": purity}

    monkeypatch.setattr(command_cost, "train_summary", train_summary)
    cost = command_cost.distributed_cost(2, tmp_path)
    assert "WORLD_SIZE" not in os.environ
    assert calls == [
        ("64", "class", "1-0", 1),
        ("32", "class", "2-0", 2),
        ("64", "class", "1-1", 1),
        ("32", "class", "2-1", 2),
    ]
    assert (cost.seconds(1), cost.seconds(2)) == (45.0, 30.0)
    assert cost.speedup == pytest.approx(1.5)
    assert cost.mean(2, "test_accuracy") == pytest.approx(0.9675)
    assert cost.gap("test_accuracy") == pytest.approx(0.005)  # the first runs' difference
    assert cost.gap("block_purity") == pytest.approx(0.04)
