"""`tradewind risk simulate --with-strategies`: an exported RL policy trades the replayed market through
the paper exchange beside momentum, the crash is still caught and hedged while they trade, and the
arbitrage strategy says whether the data holds a conversion cycle it could trade.

Real recorded Binance spot + USD-M data (tests/data/risk/README.md). The policy is a tiny numpy actor
written as `tradewind train` writes `actor.npz`: it wants to be long when flat and flat when long, so
it trades at every bar it decides on; what the loop does with its decisions is what is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from services.risk.replay import NS, MarketMessage, load_messages
from services.risk.sim_strategies import conversion_cycles, factory
from services.risk.simulate import SimConfig, run_messages
from shared.cli import cli
from shared.rl.bars import Bars
from shared.rl.env_config import EnvConfig, env_config_to_dict
from shared.rl.features import WARMUP, compute_features
from shared.rl.weights import WEIGHTS_FILE, NumpyNet, encode_weights, file_sha256, with_sha
from shared.schemas import Trade
from shared.sections.executor import ExecutorSettings
from shared.sections.risk import RiskSettings

DATA = Path(__file__).parents[1] / "data" / "risk" / "binance_btcusdt_20240808-09.jsonl.gz"
ENV = {"REDIS_URL": None, "DATABASE_URL": None, "TRADEWIND_DEBUG": None}
BAR_SECONDS = 1.0


def write_flip_policy(root: Path) -> Path:
    """A single-market policy over levels (flat, long) that picks long when flat and flat when long."""
    n = 200
    flat = np.full(n, 100.0)
    bars = Bars(np.arange(n, dtype=np.int64) * NS, flat, flat, flat, flat, np.ones(n))
    names = compute_features(bars).names  # OHLCV features with the time of day, as bars from trades give
    n_obs = len(names) + 2  # + position held, its last-bar PnL
    weight = np.zeros((n_obs, 2), np.float32)
    weight[-2, 0] = 10.0  # logit of "flat" grows with the position held
    net = NumpyNet("mlp", {"actor": [(weight, np.array([0.0, 1.0], np.float32), None)]})
    meta = {
        "algo": "ppo",
        "bar_seconds": BAR_SECONDS,
        "feature_names": list(names),
        "features": {"time_features": "day"},
        "env": env_config_to_dict(EnvConfig(levels=(0.0, 1.0), allow_short=False)),
    }
    out = root / "flip"
    out.mkdir()
    (out / WEIGHTS_FILE).write_bytes(encode_weights(net, meta, n_obs, {"type": "discrete", "n": 2}))
    (out / "tradewind.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def first_300s() -> list[MarketMessage]:
    messages = load_messages(DATA)
    end = messages[0].recv_ts + 300 * NS
    return [m for m in messages if m.recv_ts < end]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flip_policy(tmp_path_factory.mktemp("policy"))


def test_an_rl_policy_trades_in_the_loop_and_the_crash_is_still_hedged(
    first_300s: list[MarketMessage], policy: Path
) -> None:
    executor = ExecutorSettings(rl_min_order=0.0)
    strategies = factory(
        ["momentum", "rl", "arbitrage"], executor, with_sha(str(policy), file_sha256(policy / WEIGHTS_FILE))
    )
    config = SimConfig(0.08, 30.0, 120.0, scope="venue", spot_quote=0.1)
    hedged = run_messages(first_300s, RiskSettings(), config, strategies=strategies)
    naked = run_messages(
        first_300s, RiskSettings(), SimConfig(**{**config.__dict__, "hedge": False}), strategies=strategies
    )
    assert hedged["strategies"] == ["momentum", "rl", "arbitrage"]
    for run in (hedged, naked):
        rl = run["per_strategy"]["rl"]
        # one decision per 1 s bar after the features' warm-up, over the ~300 s the loop traded
        assert 300 - WARMUP - 20 < rl["decisions"] <= 300 - WARMUP
        assert rl["orders"] > 100 and rl["fills"] > 50 and rl["bought"] > 0 and rl["sold"] > 0
        assert rl["rejected"] > 0  # its buys into the crash never reached the venue (risk.crash_no_buy)
        assert 0 < rl["sold"] <= rl["bought"]  # a rejected buy holds nothing
        assert rl["fees"] > 0
        assert run["per_strategy"]["momentum"]["orders"] > 0
        assert run["strategy_orders"] == sum(s["orders"] for s in run["per_strategy"].values())
        assert run["rejections"].get("risk.crash_no_buy", 0) > 0
    assert hedged["per_strategy"]["arbitrage"]["orders"] == 0
    assert hedged["detected"] and hedged["liquidations"] == 0 and hedged["false_alarms"] == 0
    assert naked["max_drawdown"] == pytest.approx(0.5 * 0.08, rel=0.15)  # half the value in BTC, down 8%
    # the hedge halves the inventory's fall; the strategies' own trading costs come on top of it
    costs = sum(s["fees"] for s in hedged["per_strategy"].values()) / hedged["initial_value"]
    assert hedged["max_drawdown"] <= 0.5 * naked["max_drawdown"] + costs
    assert hedged["hedge_left"] <= 1e-6 * hedged["hedge_size"]


def test_the_rl_account_is_what_its_fills_say(first_300s: list[MarketMessage], policy: Path) -> None:
    """PnL from the policy's own fills: cash spent and received, fees, and what it still holds at the last price."""
    window = [m for m in first_300s if m.recv_ts < first_300s[0].recv_ts + 150 * NS]
    run = run_messages(
        window,
        RiskSettings(),
        SimConfig(0.0, spot_quote=0.1),
        strategies=factory(["rl"], ExecutorSettings(rl_min_order=0.0), str(policy)),
    )
    rl = run["per_strategy"]["rl"]
    assert rl["orders"] > 0 and rl["rejected"] == 0 and run["rejections"] == {}
    held = rl["positions"].get("binance BTC/USDT", 0.0)
    fee_rate = 0.001  # Binance spot taker, charged in the asset received: a buy's in BTC
    # net of the buys' fees: the executor's holdings count fills gross, so its sells return the fee too
    assert held == pytest.approx(rl["bought"] - rl["sold"] - fee_rate * rl["bought"], abs=1e-6)
    price = float(np.median([m.price for m in window if isinstance(m, Trade) and m.exchange == "binance"]))
    assert rl["fees"] == pytest.approx(fee_rate * (rl["bought"] + rl["sold"]) * price, rel=0.02)  # calm: ±1%
    assert rl["pnl"] < 0  # flipping every second pays the spread and the fee, and the data has no trend to earn


def test_arbitrage_says_the_data_holds_no_cycle(tmp_path: Path) -> None:
    argv = ["risk", "simulate", "--data", str(DATA), "--crash", "0", "--with-strategies", "momentum,arbitrage"]
    result = CliRunner().invoke(cli, argv, env=ENV)
    assert result.exit_code == 0, result.output
    assert "arbitrage: no cycle in the data (markets: binance BTC/USDT, binance_futures BTC/USDT)" in result.output
    assert "momentum: orders " in result.output


def test_a_cycle_is_found_only_among_one_venues_spot_conversions() -> None:
    markets = [("kraken", "BTC/USD"), ("kraken", "ETH/USD"), ("kraken", "ETH/BTC"), ("bitstamp", "ETH/USD")]
    assert conversion_cycles(markets) == ["kraken BTC>ETH>USD>BTC"]
    # the same three pairs spread over two venues, or closed by a perpetual, are no cycle
    assert conversion_cycles([("kraken", "BTC/USD"), ("kraken", "ETH/USD"), ("bitstamp", "ETH/BTC")]) == []
    assert conversion_cycles([("okx", "BTC/USDT"), ("okx", "ETH/USDT"), ("okx_futures", "ETH/BTC")]) == []
    square = [("x", "A/B"), ("x", "B/C"), ("x", "C/D"), ("x", "D/A")]
    assert conversion_cycles(square) == ["x A>B>C>D>A"]


def test_the_strategy_list_is_checked() -> None:
    for argv, said in (
        (["--with-strategies", "rl"], "needs --policy"),
        (["--with-strategies", "momentum,grid"], "unknown grid"),
        (["--policy", "somewhere"], "add rl to --with-strategies"),
    ):
        result = CliRunner().invoke(cli, ["risk", "simulate", "--data", str(DATA), *argv], env=ENV)
        assert result.exit_code == 2 and said in result.output, result.output
