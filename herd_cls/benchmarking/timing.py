"""What benchmarks time: functions interleaved in one process, training steps as images per
second, whole commands as a user runs them, and peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple


def interleaved_medians(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call over ``repeats`` rounds, after one warm-up round; every round
    runs every call once, in order, so that a slower or faster spell of the machine falls on all
    of them alike."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for call in calls.values():
        call()
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def images_per_second(
    step: Callable[[], object], images: int, steps: int, device: str
) -> tuple[float, float]:
    """(images/s, peak memory in MB) of ``steps`` timed calls of ``step``, ``images`` per call,
    after 2 warm-up calls. On CUDA the device is synchronised and the peak is of allocated memory;
    elsewhere it is this process's peak resident memory."""
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    for _ in range(2):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        reset_peak_memory()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else resident_memory_mb()
    return images * steps / seconds, peak


def reset_peak_memory() -> None:
    """Make this process's peak resident memory its present one (Linux's /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def resident_memory_mb(peak: bool = True) -> float:
    """This process's peak (VmHWM) or present (VmRSS) resident memory, in MB (Linux)."""
    key = "VmHWM:" if peak else "VmRSS:"
    return float(Path("/proc/self/status").read_text().split(key)[1].split()[0]) / 1024


class Finished(NamedTuple):
    seconds: float  # wall time of the whole process, start-up and imports included
    peak_mb: float  # its peak resident memory


def herd_cli(*args, quiet: bool = False, processes: int = 1) -> Finished:
    """Run ``herd-cls ARGS`` as a user would, in a process of its own (its output hidden if
    ``quiet``), or under ``torchrun --nproc_per_node processes`` when ``processes`` > 1; an error
    stops the script with the command named."""
    start = time.perf_counter()
    out = subprocess.DEVNULL if quiet else None
    launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={processes}"] * (processes > 1)
    command = [sys.executable, *launcher, "-m", "herd_cls", *map(str, args)]
    proc = subprocess.Popen(command, stdout=out)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"herd-cls {' '.join(map(str, args))} failed")
    return Finished(time.perf_counter() - start, usage.ru_maxrss / 1024)
