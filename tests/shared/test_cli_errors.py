"""Issue 17's examples, each run as a user types it through the real `tradewind` group: one clear line
on stderr, the documented exit status (2 input/usage/config, 1 runtime), no traceback, within seconds."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shared.cli import cli
from shared.schemas import Trade, to_json

INGEST = Path(__file__).parent.parent / "data" / "ingest"
KEY = "k" * 64


def run(argv: list[str], tmp_path: Path, **env: str | None) -> Result:
    """Run from an empty folder's var dir, with no server URLs unless given, and time it."""
    base: dict[str, str | None] = {
        "REDIS_URL": None,
        "DATABASE_URL": None,
        "TRADEWIND_DEBUG": None,
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_TRAINER__POLICY_DIR": str(tmp_path / "var" / "policies"),
        "TRADEWIND_CONTROL__OPERATOR_KEY": KEY,
    }
    started = time.monotonic()
    result = CliRunner().invoke(cli, argv, env={**base, **env})
    assert time.monotonic() - started < 30, f"{argv} took {time.monotonic() - started:.0f} s"
    return result


def one_line(result: Result, code: int, prefix: str, *needles: str) -> str:
    """Assert the documented failure shape; return the line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("normalize: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix + ": "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bars") / "bars.csv"
    result = CliRunner().invoke(cli, ["synth", "--kind", "mean_reverting", "--bars", "600", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def csv_with(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def good_rows(n: int, start_day: int = 1) -> list[str]:
    return [f"2024-01-{start_day:02d}T{i // 60:02d}:{i % 60:02d}:00Z,100,101,99,{100 + i % 7},5" for i in range(n)]


# Tracebacks instead of answers


@pytest.mark.parametrize("argv", [["halt"], ["streams"], ["risk", "state"]])
def test_unreachable_redis_is_one_line_naming_host_port(argv: list[str], tmp_path: Path) -> None:
    result = run(argv, tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    one_line(result, 1, "tradewind " + " ".join(argv), "cannot reach Redis at 127.0.0.1:1")


def test_replay_server_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["replay-server", "--data", str(INGEST / "binance"), "--port", str(port)], tmp_path)
    one_line(result, 1, "tradewind replay-server", f"cannot listen on 127.0.0.1:{port}")


def test_replay_server_port_out_of_range(tmp_path: Path) -> None:
    result = run(["replay-server", "--data", str(INGEST / "binance"), "--port", "70000"], tmp_path)
    one_line(result, 2, "tradewind replay-server", "--port")


def test_replay_server_unknown_host(tmp_path: Path) -> None:
    result = run(["replay-server", "--data", str(INGEST / "binance"), "--host", "no-such-host.invalid"], tmp_path)
    one_line(result, 2, "tradewind replay-server", "--host no-such-host.invalid")


@pytest.mark.parametrize("bars", ["0", "5", "-3"])
def test_synth_too_few_bars(bars: str, tmp_path: Path) -> None:
    result = run(["synth", "--kind", "mean_reverting", "--bars", bars, "--out", str(tmp_path / "x.csv")], tmp_path)
    one_line(result, 2, "tradewind synth", "--bars")
    assert not (tmp_path / "x.csv").exists()


def test_synth_unwritable_out(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.csv"
    result = run(["synth", "--kind", "mean_reverting", "--bars", "500", "--out", str(out)], tmp_path)
    one_line(result, 2, "tradewind synth", f"--out {out}")


def normalized(tmp_path: Path, prices: list[float], seconds: float = 300.0) -> Path:
    path = tmp_path / "norm.jsonl"
    n = len(prices)
    with path.open("wb") as fh:
        for i, p in enumerate(prices):
            ts = int(1.7e18) + int(i * seconds / max(n - 1, 1) * 1e9)
            fh.write(to_json(Trade("binance", "BTC/USDT", str(i), p, 0.1, "buy", ts, ts)) + b"\n")
    return path


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_risk_simulate_non_positive_price_names_the_line(bad: float, tmp_path: Path) -> None:
    path = normalized(tmp_path, [100.0] * 5 + [bad] + [100.0] * 5)
    result = run(["risk", "simulate", "--data", str(path)], tmp_path)
    one_line(result, 2, "tradewind risk simulate", f"{path}:6", "price > 0")


def test_backtest_plot_in_a_missing_directory(bars_csv: Path, tmp_path: Path) -> None:
    argv = ["backtest", "--data", str(bars_csv), "--policy", "baseline:flat", "--plot", "/nonexistent/dir/x.html"]
    one_line(run(argv, tmp_path), 2, "tradewind backtest", "--plot /nonexistent/dir/x.html", "does not exist")


# Hangs


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_status_against_a_silent_database_gives_up_naming_it(silent_server: int, tmp_path: Path) -> None:
    dsn = f"postgresql://tw:secret@127.0.0.1:{silent_server}/tw"
    result = run(["status", "--json"], tmp_path, DATABASE_URL=dsn)
    line = one_line(result, 1, "tradewind status", f"cannot reach PostgreSQL at 127.0.0.1:{silent_server}")
    assert "secret" not in line and result.stdout == ""


# "Aborted!" for a truncated .gz


def truncated_gz(path: Path, text: str) -> Path:
    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])
    return path


def test_truncated_gz_in_train_backtest_arb_and_risk(bars_csv: Path, tmp_path: Path) -> None:
    bars = truncated_gz(tmp_path / "bars.csv.gz", bars_csv.read_text())
    lines = "".join(f'{{"symbol": "A{i}/B", "bids": [[1, 1]], "asks": [[2, 1]]}}\n' for i in range(500))
    books = truncated_gz(tmp_path / "books.jsonl.gz", lines)
    norm = truncated_gz(tmp_path / "norm.jsonl.gz", normalized(tmp_path, [100.0] * 400).read_text())
    for argv, name in [
        (["train", "--algo", "ppo", "--data", str(bars)], "tradewind train"),
        (["backtest", "--data", str(bars), "--policy", "baseline:flat"], "tradewind backtest"),
        (["arb", "scan", "--books", str(books)], "tradewind arb scan"),
        (["risk", "simulate", "--data", str(norm)], "tradewind risk simulate"),
    ]:
        result = run(argv, tmp_path)
        assert "Aborted!" not in result.output
        one_line(result, 2, name, "ends early")


# Silent nonsense


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_train_timesteps_below_1(steps: str, bars_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    argv = ["train", "--algo", "ppo", "--data", str(bars_csv), "--timesteps", steps, "--out", str(out)]
    one_line(run(argv, tmp_path), 2, "tradewind train", "--timesteps")
    assert not out.exists()


def test_train_unknown_set_section_lists_the_valid_ones(bars_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    argv = ["train", "--algo", "ppo", "--data", str(bars_csv), "--set", "nosuch.key=1", "--out", str(out)]
    one_line(run(argv, tmp_path), 2, "tradewind train", "[nosuch]", "training", "env")
    assert not out.exists()


def test_train_set_value_of_the_wrong_type(bars_csv: Path, tmp_path: Path) -> None:
    argv = ["train", "--algo", "ppo", "--data", str(bars_csv), "--set", "training.lr=fast"]
    one_line(run(argv, tmp_path), 2, "tradewind train", "training.lr", "'fast'")


def test_train_folds_below_2(bars_csv: Path, tmp_path: Path) -> None:
    argv = ["train", "--algo", "ppo", "--data", str(bars_csv), "--folds", "0"]
    one_line(run(argv, tmp_path), 2, "tradewind train", "--folds")


def test_unsorted_rows_are_named_in_a_warning(tmp_path: Path) -> None:
    rows = good_rows(100)
    rows[10], rows[11] = rows[11], rows[10]
    result = run(["backtest", "--data", str(csv_with(tmp_path, rows)), "--policy", "baseline:flat", "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "out of time order, first at line 13 (before line 12)" in result.stderr


def test_conflicting_duplicate_timestamps_are_an_error_naming_both_rows(tmp_path: Path) -> None:
    rows = good_rows(100)
    rows[20] = rows[19].replace(",5", ",6")
    path = csv_with(tmp_path, rows)
    result = run(["backtest", "--data", str(path), "--policy", "baseline:flat"], tmp_path)
    one_line(result, 2, "tradewind backtest", "line 21 and line 22", "two different bars")


def test_backtest_of_3_bars_is_refused(tmp_path: Path) -> None:
    path = csv_with(tmp_path, good_rows(3))
    result = run(["backtest", "--data", str(path), "--policy", "baseline:flat", "--json"], tmp_path)
    one_line(result, 2, "tradewind backtest", "expected at least 30 out-of-sample bars")
    assert result.stdout == ""


def books_file(tmp_path: Path, *lines: dict[str, object]) -> Path:
    path = tmp_path / "books.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


GOOD = [
    {"symbol": "ETH/BTC", "bids": [[0.05, 10]], "asks": [[0.0501, 10]]},
    {"symbol": "ETH/USDT", "bids": [[2000, 10]], "asks": [[2001, 10]]},
    {"symbol": "BTC/USDT", "bids": [[40000, 10]], "asks": [[40001, 10]]},
]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ({"symbol": "ETH/BTC", "bids": [[0.0001, 10]], "asks": [[0.0002, 10]]}, "given again (first on line 1)"),
        ({"symbol": "LTC/BTC", "bids": [[0.01, 1]], "asks": [[0.009, 1]]}, "crossed"),
        ({"symbol": "LTC/BTC", "bids": [], "asks": []}, "no levels"),
        ({"symbol": "LTC/BTC", "bids": [[1e308, 1]], "asks": []}, "beyond any real market"),
    ],
)
def test_arb_scan_refuses_nonsense_books(line: dict[str, object], needle: str, tmp_path: Path) -> None:
    path = books_file(tmp_path, *GOOD, line)
    result = run(["arb", "scan", "--books", str(path), "--json"], tmp_path)
    one_line(result, 2, "tradewind arb scan", f"{path}:4", needle)
    assert result.stdout == ""


def test_arb_scan_refuses_an_empty_file(tmp_path: Path) -> None:
    path = books_file(tmp_path)
    one_line(run(["arb", "scan", "--books", str(path)], tmp_path), 2, "tradewind arb scan", "no books")


def test_risk_simulate_says_no_crash_was_injected_and_why(tmp_path: Path) -> None:
    path = normalized(tmp_path, [100.0 + i % 3 for i in range(50)], seconds=45)
    result = run(["risk", "simulate", "--data", str(path), "--json"], tmp_path)
    one_line(result, 2, "tradewind risk simulate", "no crash injected", "spans 45.0 s", "--crash-at 120")


def test_normalize_usdm_capture_as_spot_warns(tmp_path: Path) -> None:
    path = INGEST / "binance_futures" / "cryptofeed-2021-07-22" / "BINANCE_FUTURES.ws.1.0.gz"
    result = run(["normalize", "-e", "binance", str(path)], tmp_path)
    assert result.exit_code == 0, result.output
    assert "frames gave no message; is" in result.stderr and "binance_futures frames read as binance" in result.stderr
    assert "Traceback" not in result.output


def test_normalize_garbage_exits_2_and_echoes_no_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "garbage.txt"
    path.write_bytes(b"\x1b[31mnot json\x07\n\x1b]0;owned\x07 {\n")
    result = run(["normalize", "-e", "binance", str(path)], tmp_path)
    assert result.exit_code == 2, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.stderr.splitlines()[-1].startswith("tradewind normalize: ")
    assert "none of its 2 frames" in result.stderr


# Errors that point the wrong way


def test_a_bad_date_names_its_row(tmp_path: Path) -> None:
    rows = good_rows(50)
    rows[7] = "yesterday" + rows[7][rows[7].index(",") :]
    path = csv_with(tmp_path, rows)
    one_line(run(["backtest", "--data", str(path), "--policy", "baseline:flat"], tmp_path), 2, "tradewind backtest",
             "line 9", "'yesterday'")  # fmt: skip


def test_a_negative_close_names_its_row(tmp_path: Path) -> None:
    rows = good_rows(50)
    rows[4] = rows[4].rsplit(",", 2)[0] + ",-5.0,5"
    path = csv_with(tmp_path, rows)
    one_line(run(["backtest", "--data", str(path), "--policy", "baseline:flat"], tmp_path), 2, "tradewind backtest",
             "line 6", "'close'", "-5.0")  # fmt: skip


def test_set_split_train_out_of_range_names_the_key(bars_csv: Path, tmp_path: Path) -> None:
    argv = ["train", "--algo", "ppo", "--data", str(bars_csv), "--set", "split.train=1.5"]
    one_line(run(argv, tmp_path), 2, "tradewind train", "split.train", "1.5")


def test_a_missing_policy_directory_says_so(bars_csv: Path, tmp_path: Path) -> None:
    missing = tmp_path / "var" / "policies" / "nope"
    argv = ["backtest", "--data", str(bars_csv), "--policy", str(missing)]
    one_line(run(argv, tmp_path), 2, "tradewind backtest", "no such file or directory")


def test_a_corrupt_checkpoint_is_one_line(bars_csv: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "var" / "policies" / "broken"
    ckpt.mkdir(parents=True)
    (ckpt / "actor.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (ckpt / "module_state.pkl").write_bytes(b"\x80\x04garbage")
    argv = ["backtest", "--data", str(bars_csv), "--policy", str(ckpt)]
    one_line(run(argv, tmp_path), 2, "tradewind backtest", "not a weights-only policy file")


# Exit codes agree


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["normalize", "-e", "binance", "missing.txt"], "tradewind normalize"),
        (["arb", "scan", "--books", "missing.jsonl"], "tradewind arb scan"),
        (["train", "--algo", "ppo", "--data", "missing.csv"], "tradewind train"),
        (["backtest", "--data", "missing.csv", "--policy", "baseline:flat"], "tradewind backtest"),
        (["risk", "simulate", "--data", "missing.jsonl"], "tradewind risk simulate"),
        (["replay-server", "--data", "missing"], "tradewind replay-server"),
    ],
)
def test_a_missing_input_file_exits_2_everywhere(argv: list[str], name: str, tmp_path: Path) -> None:
    one_line(run(argv, tmp_path), 2, name, "missing")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(["--debug", "arb", "scan", "--books", str(books_file(tmp_path))], tmp_path)
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_a_list_setting_given_as_plain_text_names_its_variable(tmp_path: Path) -> None:
    var = "TRADEWIND_INGEST__VENUES__BINANCE__SYMBOLS"
    result = run(["config"], tmp_path, **{var: "BTC/USDT"})
    line = one_line(result, 2, "tradewind config", var, "JSON")
    assert "TRADEWIND_CONFIG" not in line
