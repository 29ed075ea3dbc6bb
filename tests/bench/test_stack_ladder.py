"""The stack ladder's verdicts: when lag counts as bounded, where the knee is, which process is named."""

from __future__ import annotations

from bench.bench_stack import Step, group_service, lag_bounded, process_name, summarize


def test_a_flat_or_noisy_lag_is_bounded_and_a_growing_one_is_not() -> None:
    assert lag_bounded([0, 3, 40, 2, 0, 12, 5, 0, 30])
    assert lag_bounded([150, 90, 180, 120, 160, 199])  # under the slack, however it wanders
    assert lag_bounded([])
    assert not lag_bounded([10, 50, 120, 300, 700, 1500])
    assert not lag_bounded([5, 5, 5, 9_000, 10_000, 10_000])  # at the cap


def test_processes_are_named_by_their_command_line() -> None:
    assert process_name(["/venv/bin/python3", "-m", "services.executor"]) == "executor"
    assert process_name(["/usr/bin/redis-server", "127.0.0.1:6379"]) == "redis"
    assert process_name(["postgres: checkpointer "]) == "postgres"
    assert process_name(["/venv/bin/python3", "-m", "ray.worker"]) is None


def test_groups_map_to_the_service_that_reads_them() -> None:
    assert group_service("executor-md") == "executor"
    assert group_service("risk") == "risk"
    assert group_service("recorder") == "ingest"


def _step(speed: float, rate: float, lags: list[int], cpu: dict[str, float], wait: dict[str, float]) -> Step:
    lag = {"md:book:binance/executor-md": lags, "md:trades:binance/risk-md": [0, 1, 0]}
    return Step(speed, rate, lag, cpu, wait, window_s=24.0)


def test_the_knee_is_the_first_step_whose_lag_grows_and_its_consumer_is_named() -> None:
    steps = [
        _step(10, 3_000, [0, 2, 1], {"ingest": 20, "executor": 15}, {}),
        _step(40, 12_000, [5, 40, 30], {"ingest": 60, "executor": 50}, {}),
        _step(160, 30_000, [100, 900, 5_000], {"ingest": 90, "executor": 70}, {"executor": 25}),
    ]
    figures = summarize(steps)
    assert figures["stack_msgs_per_s"] == 12_000
    assert figures["stack_max_lag"] == 40
    assert figures["stack_knee_speed"] == "160"
    assert figures["stack_saturates_first"] == "executor"  # the lagging group's reader, not the busier ingest
    assert figures["stack_saturates_first_pct"] == 95.0
    assert str(figures["stack_ladder"]).split() == [
        "10:3000/2/bounded/ingest=20+0%",
        "40:12000/40/bounded/ingest=60+0%",
        "160:30000/5000/unbounded/executor=70+25%",
    ]


def test_without_growing_lag_the_knee_is_where_the_rate_stops_rising() -> None:
    steps = [
        _step(10, 3_000, [0], {"ingest": 30}, {"ingest": 10}),
        _step(40, 9_000, [1], {"ingest": 70}, {"ingest": 25}),
        _step(160, 9_300, [2], {"ingest": 72}, {"ingest": 27}),
    ]
    figures = summarize(steps)
    assert figures["stack_knee_speed"] == "160"
    assert figures["stack_saturates_first"] == "ingest"
    assert figures["stack_msgs_per_s"] == 9_300


def test_a_knee_with_no_busy_process_names_none() -> None:
    steps = [_step(10, 3_000, [0], {"ingest": 30}, {}), _step(40, 3_100, [0], {"ingest": 31}, {})]
    figures = summarize(steps)
    assert figures["stack_saturates_first"] == "none (ingest 31%)"
    assert summarize([_step(10, 3_000, [0], {"ingest": 30}, {})])["stack_knee_speed"] == "none"


def test_a_step_whose_stack_never_started_is_shown_and_left_out() -> None:
    figures = summarize([_step(10, 3_000, [0], {"ingest": 30}, {}), Step(40)])
    assert figures["stack_ladder"] == "10:3000/1/bounded/ingest=30+0% 40:no-data"
    assert figures["stack_knee_speed"] == "none"
    assert figures["stack_msgs_per_s"] == 3_000
