"""herd_cls.benchmarking.tables: seed and paired tables against values worked out by hand;
publishing replaces only the marked block."""

import pytest

from herd_cls.benchmarking import tables


def rows_of(**columns):
    """{label: records}: each keyword a list of (seed, fields) per row label."""
    return {k: [{"seed": s, **f} for s, f in enumerate(v)] for k, v in columns.items()}


def test_cells_and_grouping():
    assert tables.mean_std([1.0, None, 3.0]) == "2.000 ± 1.000" and tables.mean_std([None]) == "–"
    table = tables.markdown_table(["a", "b"], [[1, ""], ["x", "y"]])
    assert table == "| a | b |\n|---|---|\n| 1 | |\n| x | y |"
    records = [{"setting": "b", "i": 0}, {"setting": "a", "i": 1}, {"setting": "b", "i": 2}]
    grouped = tables.group(records, order=["a", "b", "c"])
    assert {k: [r["i"] for r in v] for k, v in grouped.items()} == {"a": [1], "b": [0, 2]}
    for r, data in zip(records, ("x", "y", "y")):
        r["data"] = data
    by_both = tables.group(records, ("data", "setting"), order=[("y", "b"), ("x", "b"), ("y", "a")])
    assert {k: [r["i"] for r in v] for k, v in by_both.items()} == {
        ("y", "b"): [2],
        ("x", "b"): [0],
        ("y", "a"): [1],
    }
    # nested by the first label, each keeping the pairs' order
    split = {
        k: {kk: [r["i"] for r in v] for kk, v in rows.items()}
        for k, rows in tables.nested(by_both).items()
    }
    assert split == {"y": {"b": [2], "a": [1]}, "x": {"b": [0]}}
    assert list(split["y"]) == ["b", "a"]


def test_paired_differences_match_records_by_seed_golden():
    """other - base on the seeds both have (seed 3 has no partner): differences +1, -1, +3, mean 1,
    standard error std([1, -1, 3], ddof=1) / sqrt(3) = 2 / sqrt(3); two up, one down."""
    base = [{"seed": s, "v": v} for s, v in ((0, 1.0), (1, 2.0), (2, 0.0))]
    other = [{"seed": s, "v": v} for s, v in ((0, 2.0), (1, 1.0), (2, 3.0), (3, 9.0))]
    d = tables.paired(base, other, lambda r: r["v"])
    assert (d["pairs"], d["up"], d["down"]) == (3, 2, 1)
    assert d["mean"] == pytest.approx(1.0) and d["error"] == pytest.approx(2 / 3**0.5)


def test_seed_table_means_fields_and_calls_functions_of_the_row():
    rows = {("b1", "x"): [{"v": 1.0, "n": 3}, {"v": 3.0}], ("b1", "y"): [{"v": 2.0, "n": 1}]}
    columns = [
        ("v", "v"),
        (lambda rs: f"{len(rs) * 10}", "ten per seed"),
        (tables.each_seed("n"), "n"),
    ]
    assert tables.seed_table(rows, columns, lead=("backbone",)).splitlines() == [
        "| backbone | setting | seeds | v | ten per seed | n |",
        "|---|---|---|---|---|---|",
        "| b1 | x | 2 | 2.000 ± 1.000 | 20 | 3, – |",
        "| b1 | y | 1 | 2.000 ± 0.000 | 10 | 1 |",
    ]


def test_a_tuple_path_reads_nested_records_and_none_where_a_step_is_missing():
    record = {"a": {"b": [{"c": 1.5}, None]}, "d": 2.0}
    assert tables.value_at(record, ("a", "b", 0, "c")) == 1.5
    assert tables.value_at(record, "d") == 2.0
    for missing in (("a", "b", 1, "c"), ("a", "b", 2), ("a", "x"), "x"):
        assert tables.value_at(record, missing) is None
    rows = {"r": [{"s": {"m": 1.0}}, {"s": {"m": 3.0}}, {"s": None}]}
    assert (
        tables.seed_table(rows, [(("s", "m"), "m")]).splitlines()[-1] == "| r | 3 | 2.000 ± 1.000 |"
    )
    assert tables.per_class([{"s": {"q": [1, 3]}}, {"s": {"q": [3, 5]}}], ("s", "q")).tolist() == [
        2,
        4,
    ]


def test_per_class_statistics_are_seed_means_of_each_class():
    records = [
        {"p": [0.2, 0.9, 0.5], "s": {"q": [1, 3]}},
        {"p": [0.4, 0.7, 0.1], "s": {"q": [3, 5]}},
    ]
    assert tables.per_class(records, "p").tolist() == pytest.approx([0.3, 0.8, 0.3])
    assert tables.per_class(records, lambda r: r["s"]["q"]).tolist() == [2, 4]
    # the lowest class of the seed means (0.3), not the mean of each seed's lowest (0.15)
    assert tables.lowest_class("p")(records) == pytest.approx(0.3)
    assert tables.formatted(tables.lowest_class("p"), "{:.2f}")(records) == "0.30"
    assert tables.each_seed_lowest("p")(records) == "0.150 ± 0.050"  # seeds' lowest: 0.2 and 0.1


def test_paired_table_words_a_difference_within_its_error_and_skips_single_pairs():
    rows = rows_of(
        base=[{"v": 0.0}, {"v": 0.0}, {"v": 0.0}],
        clear=[{"v": 1.0}, {"v": 1.0}, {"v": 1.0}],  # +1 ± 0
        noisy=[{"v": 1.0}, {"v": -1.0}, {"v": 0.5}],  # +0.167 ± 0.601
        single=[{"v": 5.0}],
    )
    lines = tables.paired_table(rows, "base", [("v", "v")]).splitlines()
    assert lines[0] == "| setting | paired seeds | v − base |"
    assert lines[2] == "| clear | 3 | +1.000 ± 0.000 (3 up, 0 down) |"
    assert lines[3] == (
        "| noisy | 3 | +0.167 ± 0.601 (2 up, 1 down, within its standard error: no difference "
        "shown) |"
    )
    assert len(lines) == 4 and tables.paired_table(rows, "missing", [("v", "v")]) == ""


def test_publish_replaces_only_the_marked_block(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("top\n")
    page = "before\n<!-- t -->\nold\n<!-- /t -->\nafter <!-- u -->\n"
    (tmp_path / "docs" / "p.md").write_text(page)
    tables.publish("t", "new\n")
    assert (tmp_path / "docs" / "p.md").read_text() == page.replace("old\n", "new\n")
    assert (tmp_path / "reports" / "t.md").read_text() == "new\n"
    assert (tmp_path / "README.md").read_text() == "top\n"


def test_a_page_is_its_intro_and_stamp_then_its_sections_a_blank_line_apart(monkeypatch):
    monkeypatch.setattr(tables, "stamp", lambda records: f"runs at {len(list(records))} records")
    page = tables.page("`python x.py`, seeds [0],", [{}, {}], "| t |", "Targets:", "- a\n- b")
    assert page == "`python x.py`, seeds [0], runs at 2 records.\n\n| t |\n\nTargets:\n\n- a\n- b\n"
    assert (
        tables.page("x:", [], "") == "x: runs at 0 records.\n\n\n"
    )  # an empty table keeps its gap
