"""The benchmark scripts' specs and one path of theirs: every spec row a valid config, every
shapes target a check on rows that exist, and the GPU benchmark's compiled bf16 path run on the
CPU. Scripts are imported from scripts/ here; no script imports another."""

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_compiled_bf16_path_on_the_cpu():
    """`--part device` is what a GPU machine runs; here its compiled, bf16-autocast path runs on the
    CPU, so the script is known to work before a GPU is at hand."""
    import subprocess

    script = SCRIPTS / "benchmark_performance.py"
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            *"--part device --device cpu --batch 2 --image-size 32 --steps 1 --jobs".split(),
            "conv autoencoder",
            "--compile",
            "on",
            "--print-only",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(
        line
        for line in out.stdout.splitlines()
        if line.startswith("| conv autoencoder | --reg class")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (
        cells[2] == "on" and float(cells[3]) > 0 and float(cells[4]) > 0 and cells[5].endswith("x")
    )
    assert "bf16 autocast" in out.stdout and "`cpu`, batch 2, 32x32 images" in out.stdout


def _benchmark_configs():
    """(script, settings) of every row each efficacy benchmark would train, from its spec."""
    import efficacy_concepts
    import efficacy_digits
    import efficacy_robustness
    import efficacy_shapes

    for table in efficacy_shapes.TABLES:
        for label in efficacy_shapes.SPEC[table]["rows"]:
            yield "shapes", efficacy_shapes.settings_of(table, label, 10)
    for part in ("classifier", "pre-logits"):
        spec = efficacy_digits.SPEC[part]
        labels = [*spec["rows"], *spec.get("candidates", {})]
        for job in efficacy_digits.jobs(part, spec["backbones"], labels, [0]):
            yield "digits", dict(job.settings)
    for table in ("concepts", "scale"):
        for job in efficacy_concepts.jobs(table, "resnet18", [0]):
            yield "concepts", dict(job.settings)
    for overrides in efficacy_robustness.SETTINGS.values():
        yield "robustness", {"dataset": "digits", **overrides}


def test_every_benchmark_row_is_a_valid_config():
    """A typo in a spec's overrides (an unknown key or choice) fails here, not hours into a run."""
    from herd_cls.config import load_config

    checked = 0
    for script, settings in _benchmark_configs():
        if not settings.pop("untrained", False):  # the random encoder is scored untrained
            load_config(overrides=settings)
            checked += 1
    assert checked > 30


def test_every_metric_a_benchmark_names_is_in_the_registry():
    """The benchmarks keep the registry's metrics under their registry names: a typo fails here."""
    from herd_cls.analysis.scores import METRICS
    from herd_cls.benchmarking import spec

    named = spec("efficacy_concepts")["metrics"] + spec("efficacy_digits")["per_class_metrics"]
    assert len(named) == 10 and set(named) <= set(METRICS.names())


def test_every_device_job_builds_for_the_ten_classes_it_is_timed_with():
    """--part device runs only where a GPU is lent: a job that cannot be built fails here first
    (the Burgess job once asked 10 class blocks of 9 dims)."""
    from herd_cls.benchmarking import built_model, device_input, spec

    for job in spec("benchmark_performance")["device"].values():
        for overrides in ({**job["model"], "reg": "none"}, {**job["model"], **job["regularised"]}):
            built_model(overrides, 10, *device_input(overrides, 224))  # the size it is timed at


def test_every_train_and_analysis_job_parses_as_the_herd_cls_command_it_times(monkeypatch):
    """--part train types ``herd-cls train OPTIONS --reg ...``, --part analysis each command after
    ``--run RUN``: an unknown command or option fails here (click's own parsing, nothing run)."""
    import shlex

    from herd_cls.benchmarking import ROOT, spec
    from herd_cls.cli import main

    monkeypatch.chdir(ROOT)  # where the benchmark runs: --config paths are relative to it
    jobs = spec("benchmark_performance")
    typed = [
        ["train", *shlex.split(j["options"]), "--reg", "class"] for j in jobs["train"].values()
    ]
    typed += [[*shlex.split(j["command"]), "--run", "runs/x"] for j in jobs["analysis"].values()]
    for name, *options in typed:
        main.commands[name].make_context(name, options)
    targets = [j["target"] for j in jobs["train"].values()]
    targets += [j["target"] for j in jobs["analysis"].values() if "target" in j]
    assert len(typed) == 13 and all(t > 0 for t in targets)


def test_every_shapes_target_names_a_check_and_rows_of_its_table():
    from efficacy_shapes import SPEC

    from herd_cls.benchmarking import TARGETS

    for target in SPEC["targets"]:
        rows = SPEC[target["table"]]["rows"]
        named = [target["label"], target.get("base"), *target.get("others", [])]
        assert target["check"] in TARGETS
        assert all(n in rows for n in named if n is not None), target["name"]
