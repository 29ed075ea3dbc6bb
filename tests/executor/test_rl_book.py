"""The RL strategy's book: a portfolio policy trading two venues, holdings counted from fills, a policy per
market set hot-swapped on its own update. Policies here are tiny numpy actors written as the trainer writes
them (`actor.npz` with its header), whose output is a constant target weight per market: what the book
does with a decision is checked independently of what a trained network would decide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.executor.strategies.rl import REPORT_WAIT_BARS, RLStrategy
from services.trainer.synth import lead_lag
from shared.rl.portfolio import PortfolioConfig, build_portfolio_data, observation_size
from shared.rl.weights import WEIGHTS_FILE, NumpyNet, encode_weights, file_sha256, with_sha
from shared.schemas import OrderEvent, OrderIntent, PolicyUpdate, Trade
from shared.sections.executor import ExecutorSettings

SPOT, PERP = ("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT")
MARKETS = [SPOT, PERP]
BAR_NS = 1_000_000_000


def write_constant_policy(
    root: Path, name: str, markets: list[tuple[str, str]], weights: list[float], config: PortfolioConfig | None = None
) -> str:
    """A portfolio policy whose actor outputs `weights` whatever it sees; return its registered reference."""
    config = config or PortfolioConfig()
    data = build_portfolio_data(lead_lag(300, seed=1, markets=markets).bars, markets, lags=config.lags)
    n_obs, n = observation_size(data), len(markets)
    bias = np.array([*weights, *([-1.0] * n)], dtype=np.float32)  # [means, log_stds]
    net = NumpyNet("mlp", {"actor": [(np.zeros((n_obs, 2 * n), np.float32), bias, None)]})
    meta = {
        "algo": "ppo",
        "markets": [{"exchange": e, "symbol": s} for e, s in markets],
        "bar_seconds": 1.0,
        "feature_names": list(data.names),
        "features": {"time_features": "day"},
        "env": config.to_dict(),
    }
    out = root / name
    out.mkdir()
    (out / WEIGHTS_FILE).write_bytes(encode_weights(net, meta, n_obs, {"type": "box", "shape": [n]}))
    (out / "tradewind.json").write_text(json.dumps(meta))
    return with_sha(str(out), file_sha256(out / WEIGHTS_FILE))


def trades(n_bars: int, start_bar: int = 0) -> list[Trade]:
    """Two trades per second per market, prices on a gentle random walk (the perpetual 10 above spot)."""
    rng = np.random.default_rng(start_bar)
    out = []
    for k in range(start_bar * 2, (start_bar + n_bars) * 2):
        ts = k * BAR_NS // 2 + 1
        price = 30_000.0 + float(rng.normal(0, 5))
        for exchange, symbol in MARKETS:
            bump = 10.0 if exchange == PERP[0] else 0.0
            out.append(Trade(exchange, symbol, f"{k}", price + bump, 0.01, "buy" if k % 3 else "sell", ts, ts))
    return out


def book_strategy(root: Path, cash: float | None = 10_000.0) -> RLStrategy:
    settings = ExecutorSettings(policy_dir=str(root), rl_notional=1_000.0, rl_min_order=0.0, rl_bar_clock="exchange")
    free = (lambda venue, asset: cash) if cash is not None else None
    return RLStrategy(settings, run_id="t", free_balance=free, bar_clock="exchange")


def feed(strategy: RLStrategy, batch: list[Trade]) -> list[OrderIntent]:
    intents: list[OrderIntent] = []
    for trade in batch:
        intents += strategy.on_trade(trade)
    return intents


async def test_a_portfolio_policy_trades_each_venue_with_its_capital(tmp_path: Path) -> None:
    strategy = book_strategy(tmp_path)
    uri = write_constant_policy(tmp_path, "p", MARKETS, [0.5, 0.25])
    assert await strategy.load(uri, "p", markets=MARKETS)
    assert strategy.active is not None and set(strategy.active.markets) == set(MARKETS)
    intents = feed(strategy, trades(400))
    assert {(i.exchange, i.symbol, i.side) for i in intents} == {(*SPOT, "buy"), (*PERP, "buy")}  # once each
    assert len(intents) == 2 and all(i.strategy == "rl" and i.margin_mode is None for i in intents)
    for intent, weight in zip(sorted(intents, key=lambda i: i.exchange), (0.5, 0.25), strict=True):
        price = strategy.prices[(intent.exchange, intent.symbol)]
        assert intent.amount * price == pytest.approx(weight * 1_000.0, rel=1e-4)  # of that venue's capital
    targets = {m: w for _, _, m, w in strategy.decisions}
    assert targets == pytest.approx({SPOT: 0.5, PERP: 0.25})


async def test_holdings_are_what_was_filled(tmp_path: Path) -> None:
    """A rejected intent and a partial fill leave the holdings equal to what was filled; the next order is
    sized against that."""
    strategy = book_strategy(tmp_path, cash=None)
    assert await strategy.start() == []  # no store: nothing to restore, updates are taken at once
    assert await strategy.load(write_constant_policy(tmp_path, "p", MARKETS, [0.5, 0.25]), "p", markets=MARKETS)
    spot, perp = sorted(feed(strategy, trades(400)), key=lambda i: i.exchange)
    assert strategy.held == {}  # nothing filled yet: an intent is not a holding

    def event(intent: OrderIntent, status: str, filled: float) -> OrderEvent:
        return OrderEvent(intent.client_order_id, intent.exchange, intent.symbol, intent.side, status, 1, filled=filled)  # type: ignore[arg-type]

    strategy.on_order_event(event(spot, "rejected", 0.0))
    strategy.on_order_event(event(perp, "partially_filled", perp.amount / 4))
    strategy.on_order_event(event(perp, "partially_filled", perp.amount / 4))  # delivered twice: counted once
    assert strategy.held == {PERP: pytest.approx(perp.amount / 4)}
    strategy.on_order_event(event(perp, "cancelled", perp.amount / 2))  # the rest cancelled after a second fill
    strategy.on_order_event(OrderEvent("other-1", *SPOT, "buy", "filled", 2, filled=5.0))  # not ours
    assert strategy.held == {PERP: pytest.approx(perp.amount / 2)}
    assert strategy.holdings.position(SPOT) == 0.0 and strategy.holdings.position(PERP) == pytest.approx(
        perp.amount / 2
    )

    # a new target on the spot market is sized from what is held there (nothing), not from the rejected order
    uri = write_constant_policy(tmp_path, "q", MARKETS, [0.4, 0.25])
    assert await strategy.on_policy(PolicyUpdate("q", "ppo", uri, 3, markets=MARKETS)) == []
    (again,) = feed(strategy, trades(2, start_bar=400))
    assert (again.exchange, again.side) == ("binance", "buy")
    assert again.amount * strategy.prices[SPOT] == pytest.approx(400.0, rel=1e-3)  # the price moved a bar since


async def test_a_market_with_an_order_open_trades_to_its_new_target_after_the_orders_report(tmp_path: Path) -> None:
    """The spot buy is still open when the target drops to 0: a sell then would offer coins not received
    yet (a paper venue with latency jitter got it first and refused it: insufficient balance). The sell
    comes at the first bar after the buy's final report, sized from what the buy filled."""
    strategy = book_strategy(tmp_path, cash=None)
    assert await strategy.start() == []  # no store: nothing to restore, updates are taken at once
    assert await strategy.load(write_constant_policy(tmp_path, "p", MARKETS, [0.5, 0.0]), "p", markets=MARKETS)
    (buy,) = feed(strategy, trades(400))
    assert (buy.exchange, buy.side) == (*SPOT[:1], "buy")
    uri = write_constant_policy(tmp_path, "flat", MARKETS, [0.0, 0.0])
    assert await strategy.on_policy(PolicyUpdate("flat", "ppo", uri, 3, markets=MARKETS)) == []
    assert feed(strategy, trades(3, start_bar=400)) == []  # the target is 0 now, but the buy is still open
    assert strategy.targets[SPOT] == 0.0  # the decision is taken (it is part of the next observation)
    strategy.on_order_event(OrderEvent(buy.client_order_id, *SPOT, "buy", "filled", 2, filled=buy.amount * 0.9))
    (sell,) = feed(strategy, trades(2, start_bar=403))
    assert (sell.exchange, sell.side) == (*SPOT[:1], "sell")
    assert sell.amount == pytest.approx(buy.amount * 0.9, rel=1e-5)  # what was received (6 digits), no more


async def test_a_report_that_never_comes_holds_a_market_back_for_a_few_bars_only(tmp_path: Path) -> None:
    strategy = book_strategy(tmp_path, cash=None)
    assert await strategy.start() == []
    assert await strategy.load(write_constant_policy(tmp_path, "p", MARKETS, [0.5, 0.0]), "p", markets=MARKETS)
    (buy,) = feed(strategy, trades(400))
    uri = write_constant_policy(tmp_path, "flat", MARKETS, [0.0, 0.0])
    assert await strategy.on_policy(PolicyUpdate("flat", "ppo", uri, 3, markets=MARKETS)) == []
    waited = feed(strategy, trades(REPORT_WAIT_BARS, start_bar=400))
    assert waited == []
    (sell,) = feed(strategy, trades(2, start_bar=400 + REPORT_WAIT_BARS))  # no report for the buy came at all
    assert (sell.exchange, sell.side, sell.amount) == (*SPOT[:1], "sell", buy.amount)  # sized on the open buy


async def test_each_market_set_has_its_own_seat_and_swap(tmp_path: Path) -> None:
    strategy = book_strategy(tmp_path)
    assert await strategy.start() == []
    single = [("kraken", "BTC/USD")]
    assert await strategy.load(write_constant_policy(tmp_path, "a", MARKETS, [0.5, 0.5]), "a", markets=MARKETS)
    assert await strategy.load(write_constant_policy(tmp_path, "k", single, [1.0]), "k", markets=single)
    assert set(strategy.seats) == {tuple(sorted(MARKETS)), tuple(single)}
    feed(strategy, trades(100))
    seat = strategy.seats[tuple(sorted(MARKETS))]
    bars_before = dict(seat.bars)

    # a new policy for the same market set takes that seat only, keeping its bars (no tick dropped)
    update = PolicyUpdate("b", "ppo", write_constant_policy(tmp_path, "b", MARKETS, [0.1, 0.1]), 1, markets=MARKETS)
    await strategy.on_policy(update)
    seat = strategy.seats[tuple(sorted(MARKETS))]
    assert seat.policy_id == "b" and seat.bars == bars_before and strategy.seats[tuple(single)].policy_id == "k"
    feed(strategy, trades(300, start_bar=100))
    assert sum(b.trades for b in seat.bars.values()) == strategy.ticks == 2 * 2 * 400

    # a policy promoted for a market set that contradicts its own markets is refused; the book is unchanged
    wrong = PolicyUpdate("c", "ppo", write_constant_policy(tmp_path, "c", MARKETS, [0.2, 0.2]), 2, markets=[SPOT])
    await strategy.on_policy(wrong)
    assert strategy.seats[tuple(sorted(MARKETS))].policy_id == "b"

    # a single-market policy on one of the portfolio's markets replaces the portfolio (one policy a market)
    spot_only = write_constant_policy(tmp_path, "s", [SPOT], [0.3])
    await strategy.on_policy(PolicyUpdate("s", "ppo", spot_only, 3, exchange=SPOT[0], symbol=SPOT[1]))
    assert set(strategy.seats) == {(SPOT,), tuple(single)} and set(strategy.by_market) == {SPOT, *single}
