"""herd_cls.benchmarking.timing: calls interleaved, training steps counted as images per second,
commands run as a user runs them, peak memory."""

import mmap

import pytest

from herd_cls.benchmarking import timing


class _Clock:
    """A stand-in for time.perf_counter, which the timed calls move on by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_medians_warm_up_once_then_run_every_call_each_round(monkeypatch):
    clock, order = _Clock(), []
    monkeypatch.setattr(timing.time, "perf_counter", clock)

    def call(name, seconds):
        def run():
            order.append(name)
            clock.now += seconds.pop(0)

        return run

    # warm-up first (its time is not counted), then three rounds
    calls = {"a": call("a", [9.0, 1.0, 3.0, 2.0]), "b": call("b", [9.0, 5.0, 4.0, 6.0])}
    medians = timing.interleaved_medians(calls, repeats=3)
    assert order == ["a", "b"] * 4
    assert medians == {"a": pytest.approx(2.0), "b": pytest.approx(5.0)}


def test_images_per_second_counts_the_timed_steps_after_two_warm_up_steps(monkeypatch):
    clock, calls = _Clock(), []
    monkeypatch.setattr(timing.time, "perf_counter", clock)

    def step():
        calls.append(clock.now)
        clock.now += 0.5

    rate, peak = timing.images_per_second(step, images=8, steps=4, device="cpu")
    assert len(calls) == 6  # 2 warm-up + 4 timed
    assert rate == pytest.approx(8 * 4 / 2.0)  # 4 steps of 0.5 s
    assert peak > 1


def test_herd_cli_times_a_command_and_stops_on_a_failed_one():
    finished = timing.herd_cli("--help", quiet=True)
    assert finished.seconds > 0 and finished.peak_mb > 1
    with pytest.raises(SystemExit, match="herd-cls no-such-command failed"):
        timing.herd_cli("no-such-command", quiet=True)


def test_herd_cli_runs_a_command_in_as_many_processes_as_asked(capfd, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # as if launched from outside torchrun
        monkeypatch.delenv(name, raising=False)
    timing.herd_cli("--help", processes=2)
    assert capfd.readouterr().out.count("Usage:") == 2


def test_peak_memory_is_reset_to_the_present_and_grows_with_an_allocation():
    timing.reset_peak_memory()
    present = timing.resident_memory_mb(peak=False)
    assert timing.resident_memory_mb() == pytest.approx(present, abs=2)
    # 64 MB of fresh pages, touched (mmap: never memory the allocator already holds resident)
    block = mmap.mmap(-1, 64 * 2**20)
    for page in range(0, len(block), 4096):
        block[page] = 1
    assert timing.resident_memory_mb() > present + 50
