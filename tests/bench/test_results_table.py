"""The README's benchmark table is generated from bench/results.json, and stale figures never survive."""

from __future__ import annotations

import json

from bench import table
from bench.__main__ import kept_results


def test_readme_table_is_what_results_json_gives() -> None:
    text = table.README.read_text()
    shown = text[text.index(table.START) : text.index(table.END) + len(table.END)]
    assert shown == table.render(json.loads(table.RESULTS.read_text())), "run `python -m bench.table`"


def test_a_missing_key_shows_as_not_measured() -> None:
    rendered = table.render({"bus_consume_msgs_per_s": 1_234_567})
    assert "| bus | `bus_consume_msgs_per_s` | 1,234,567 msgs/s |" in rendered
    assert "not measured (bus_publish_msgs_per_s absent)" in rendered


def test_every_row_names_keys_that_results_json_has() -> None:
    results = json.loads(table.RESULTS.read_text())
    for row in table.ROWS:
        for key in row.keys.replace("`", "").split(" / "):
            assert key in results, f"{row.keys}: {key} not in bench/results.json"


def test_a_rerun_module_loses_its_old_keys_and_others_keep_theirs() -> None:
    previous = {
        "a_fig": 1,
        "a_old": 2,
        "b_fig": 3,
        "_updated": "then",
        "_modules": {"bench_a": {"keys": ["a_fig", "a_old"]}, "bench_b": {"keys": ["b_fig"]}},
    }
    results, owners = kept_results(previous, ["bench_a"])
    assert results == {"b_fig": 3}
    assert owners == {"bench_b": {"keys": ["b_fig"]}}


def test_a_full_run_starts_from_nothing() -> None:
    assert kept_results({}, ["bench_a", "bench_b"]) == ({}, {})
