"""A full disk ends a command in one line naming the folder and the space needed; nothing written is
lost."""

import errno
import os
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from herd_cls import files
from herd_cls.cli import main
from herd_cls.files import DiskFullError, atomic_write

Usage = namedtuple("Usage", "total used free")


def _disk(monkeypatch, full):
    """Make the disk report no free space wherever ``full(folder)`` says so."""
    real = files.shutil.disk_usage
    monkeypatch.setattr(
        files.shutil, "disk_usage", lambda p: Usage(1, 1, 0) if full(Path(p)) else real(p)
    )


def _writers():
    from herd_cls.config import Config, save_config
    from herd_cls.report import figures
    from herd_cls.report.html import render
    from herd_cls.run import write_json

    return {
        "config": lambda d: save_config(Config(), d / "config.yaml"),
        "json": lambda d: write_json(d / "summary.json", {"a": 1}),
        "page": lambda d: render(
            "attribute.html",
            d / "page.html",
            run_name="r",
            method="m",
            matrix="x.png",
            alignment=0.5,
            chance=0.1,
            classes=[],
        ),
        "figure": lambda d: figures.hessian_heatmap(
            torch.rand(4, 4), __import__("herd_cls").BlockLayout(2, 2), 0, "t", d / "h.png"
        ),
    }


@pytest.mark.parametrize("writer", ["config", "json", "page", "figure"])
def test_every_writer_refuses_a_full_disk_and_keeps_the_old_file(tmp_path, monkeypatch, writer):
    target = {
        "config": "config.yaml",
        "json": "summary.json",
        "page": "page.html",
        "figure": "h.png",
    }[writer]
    (tmp_path / target).write_bytes(b"old")
    _disk(monkeypatch, lambda folder: folder == tmp_path)
    with pytest.raises(
        DiskFullError, match=f"no space left on the disk of {tmp_path} to write {target}: it needs"
    ):
        _writers()[writer](tmp_path)
    assert (tmp_path / target).read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == [target]


def test_a_write_that_fails_with_enospc_is_the_same_error(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("old")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", Full)
    with pytest.raises(DiskFullError, match=r"to write f: it needs 3 B"):
        atomic_write(tmp_path / "f", "new")
    assert (tmp_path / "f").read_text() == "old" and os.listdir(tmp_path) == ["f"]


@pytest.mark.slow
def test_train_on_a_full_disk_ends_in_one_line_and_resumes_once_there_is_room(
    tiny_args, tmp_path, monkeypatch
):
    runner = CliRunner()
    run = tmp_path / "runs" / "full"
    # the disk fills up once the first epoch's checkpoint is written: the second epoch's writes fail
    _disk(monkeypatch, lambda folder: folder == run and (run / "checkpoint.pt").exists())
    res = runner.invoke(main, ["train", *tiny_args, "--name", "full"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    lines = res.output.strip().splitlines()
    assert (
        len(lines) == 1 and f"no space left on the disk of {run} to write metrics.jsonl" in lines[0]
    )
    assert not (tmp_path / "runs" / "latest").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written temp files
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0  # epoch 1 kept whole
    monkeypatch.undo()
    res = runner.invoke(main, ["train", *tiny_args, "--resume", str(run)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()
