"""torchrun with gloo on CPU: two processes train like one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from herd_cls import distributed
from herd_cls.registry import HerdError

pytestmark = pytest.mark.slow
ARGS = (
    "--dataset digits --num-samples 400 --image-size 16 --backbone conv --epochs 2 "
    "--warmup 0 --ramp 0 --quiet --seed 3"
).split()


def _torchrun(procs: int, out, name: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(procs),
            "--master_port",
            str(_free_port()),
            "-m",
            "herd_cls",
            "train",
            *ARGS,
            "--out-dir",
            str(out),
            "--name",
            name,
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("reg", ["none", "class"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, reg):
    two = _torchrun(2, tmp_path, "two", "--batch-size", "16", "--reg", reg)
    assert two.returncode == 0, two.stderr[-2000:]
    one = _torchrun(1, tmp_path, "one", "--batch-size", "32", "--reg", reg)
    assert one.returncode == 0, one.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest",
        "one",
        "two",
    ]  # one folder per job
    assert two.stdout.count("test accuracy") == 1  # rank 0 speaks
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("one", "two"))
    assert b["processes"] == 2 and a["processes"] == 1
    # the same global batches and all-reduced gradients and penalty: equal up to float summation
    # order
    wa, wb = (
        load_file(tmp_path / "one" / "model.safetensors"),
        load_file(tmp_path / "two" / "model.safetensors"),
    )
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    # at most one of 81 test images
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 1 / 81 + 1e-9
    assert abs(a["block_purity"] - b["block_purity"]) < 1e-3


def _join_group(rank: int, port: int) -> None:
    """Join a 2-process gloo group on this machine as ``rank``, as torchrun's variables would."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    distributed.start("cpu")


def _check_same_worker(rank: int, port: int, results):
    _join_group(rank, port)
    try:
        distributed.check_same(f"config {rank}", "the config")
        results.put((rank, "passed"))
    except HerdError as err:
        results.put((rank, str(err)))
    finally:
        distributed.stop()


def test_ranks_that_disagree_fail_together_in_one_line():
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_check_same_worker, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    messages = dict(results.get(timeout=5) for _ in range(2))
    assert all(
        "the processes disagree on the config (ranks [1] differ from rank 0)" in m
        for m in messages.values()
    )


def _penalty_worker(rank: int, port: int, method: str, results):
    import torch

    from herd_cls.layout import BlockLayout
    from herd_cls.regularizers.herd import HeRD

    _join_group(rank, port)
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    # class 2 only on rank 1
    z, y = (
        torch.randn(12, 6),
        torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 0, 2, 1, 2]),
    )
    half = slice(0, 6) if rank == 0 else slice(6, 12)
    herd = HeRD(
        BlockLayout.split(3, 6),
        method=method,
        probes=None if method == "auto" else 4,
        reduce=distributed.all_reduce_sum,
    )
    torch.manual_seed(1 + rank)  # probe draws differ per rank, as in training
    penalty = herd(head, z[half], y[half], labels=y[half])
    penalty.backward()
    grads = [p.grad.clone() for p in head.parameters()]
    results.put((rank, penalty.item(), [g.tolist() for g in grads]))
    distributed.stop()


def test_all_reduced_class_penalty_equals_the_single_process_one():
    import torch

    from herd_cls.layout import BlockLayout
    from herd_cls.regularizers.herd import HeRD

    port = _free_port()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_penalty_worker, args=(r, port, "auto", results)) for r in range(2)]
    for p in procs:
        p.start()
    out = dict((r, (pen, grads)) for r, pen, grads in (results.get(timeout=120) for _ in range(2)))
    for p in procs:
        p.join(60)
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    z, y = torch.randn(12, 6), torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 0, 2, 1, 2])
    whole = HeRD(BlockLayout.split(3, 6))(head, z, y, labels=y)
    whole.backward()
    assert out[0][0] == pytest.approx(whole.item(), rel=1e-5) and out[1][0] == pytest.approx(
        whole.item(), rel=1e-5
    )
    # DistributedDataParallel averages the ranks' gradients: that average is the whole batch's
    # gradient
    for i, p in enumerate(head.parameters()):
        mean = (torch.tensor(out[0][1][i]) + torch.tensor(out[1][1][i])) / 2
        torch.testing.assert_close(mean, p.grad, rtol=1e-4, atol=1e-6)


def test_a_distributed_run_resumes_deterministically_and_loads_like_any_other(tmp_path):
    import shutil

    cut = _torchrun(2, tmp_path, "cut", "--batch-size", "16", "--epochs", "1")
    assert cut.returncode == 0, cut.stderr[-2000:]
    shutil.copytree(tmp_path / "cut", tmp_path / "copy")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    for name in ("cut", "copy"):
        resumed = subprocess.run(
            [
                sys.executable,
                *"-m torch.distributed.run --nproc_per_node 2 --master_port".split(),
                str(_free_port()),
                *"-m herd_cls train --resume".split(),
                str(tmp_path / name),
                "--epochs",
                "2",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (
        load_file(tmp_path / "cut" / "model.safetensors"),
        load_file(tmp_path / "copy" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)  # every rank restored the same state
    from herd_cls import load_run

    run = load_run(tmp_path / "cut")
    assert run.summary["processes"] == 2 and [r["epoch"] for r in run.history()] == [1, 2]
