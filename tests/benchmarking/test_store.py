"""herd_cls.benchmarking: the result store resumes and refuses stale settings; tables; paired
differences."""

import pytest

from herd_cls.benchmarking import store as benchmarking
from herd_cls.benchmarking import Job, ResultStore, group, markdown_table, mean_std, paired


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
    wanted = {store.key("row", f"seed {s}"): {"a": 1} for s in (0, 1)}
    assert [r["v"] for r in store.runs(wanted)] == [0, 1]
    assert store.runs({k: {"a": 2} for k in wanted}) == []  # changed settings: not reused
    store.fill([job(0, {"a": 2})])
    assert calls == [0, 1, 0]


def test_store_reads_records_saved_without_a_fingerprint(tmp_path):
    store = ResultStore(tmp_path / "r.json", "p1")
    store.path.write_text('{"x | p1": {"setting": "x", "commit": "c"}}')
    assert store.runs({"x | p1": {"anything": 1}}) == [{"setting": "x", "commit": "c"}]


def test_tables():
    assert mean_std([1.0, None, 3.0]) == "2.000 ± 1.000" and mean_std([None]) == "–"
    assert (
        markdown_table(["a", "b"], [[1, ""], ["x", "y"]])
        == "| a | b |\n|---|---|\n| 1 | |\n| x | y |"
    )
    records = [{"setting": "b", "i": 0}, {"setting": "a", "i": 1}, {"setting": "b", "i": 2}]
    assert {k: [r["i"] for r in v] for k, v in group(records, order=["a", "b", "c"]).items()} == {
        "a": [1],
        "b": [0, 2],
    }


def test_paired_differences_match_records_by_seed_golden():
    """other - base on the seeds both have (seed 3 has no partner): differences +1, -1, +3, mean 1,
    standard error std([1, -1, 3], ddof=1) / sqrt(3) = 2 / sqrt(3); two up, one down."""
    base = [{"seed": s, "v": v} for s, v in ((0, 1.0), (1, 2.0), (2, 0.0))]
    other = [{"seed": s, "v": v} for s, v in ((0, 2.0), (1, 1.0), (2, 3.0), (3, 9.0))]
    d = paired(base, other, lambda r: r["v"])
    assert (d["pairs"], d["up"], d["down"]) == (3, 2, 1)
    assert d["mean"] == pytest.approx(1.0) and d["error"] == pytest.approx(2 / 3**0.5)
