"""The momentum baseline trades only markets whose quote its notional is denominated in, and only
with the quote balance to pay for a buy."""

from services.executor.strategies.momentum import MomentumStrategy
from shared.sections.executor import ExecutorSettings

RISING = [100.0, 100.5, 101.0, 101.5, 102.0, 102.5]


def _intents(strategy: MomentumStrategy, symbol: str) -> list[tuple[str, float]]:
    """(side, quote value) of each intent."""
    out = []
    for t, mid in enumerate(RISING):
        intent = strategy.on_mid("coinbase", symbol, mid, t)
        if intent:
            out.append((intent.side, intent.amount * mid))
    return out


def _settings() -> ExecutorSettings:
    return ExecutorSettings(strategy_lookback=2, strategy_threshold_bps=1, strategy_cooldown_s=0, strategy_notional=50)


def test_a_market_quoted_in_btc_or_gbp_is_not_traded() -> None:
    strategy = MomentumStrategy(_settings(), run_id="t")
    assert _intents(strategy, "BAND/BTC") == []
    assert _intents(strategy, "SKL/GBP") == []
    buys = _intents(strategy, "BTC/USD")
    assert buys and all(side == "buy" and abs(value - 50.0) < 1e-3 for side, value in buys)


def test_a_buy_needs_the_quote_balance() -> None:
    free = {("coinbase", "USD"): 49.0}
    strategy = MomentumStrategy(_settings(), run_id="t", free_balance=lambda v, a: free.get((v, a), 0.0))
    assert _intents(strategy, "BTC/USD") == []
    free[("coinbase", "USD")] = 1_000.0
    assert _intents(strategy, "BTC/USD")


def test_the_quotes_are_a_setting() -> None:
    strategy = MomentumStrategy(_settings().model_copy(update={"strategy_quotes": ["GBP"]}), run_id="t")
    assert _intents(strategy, "SKL/GBP") and not _intents(strategy, "BTC/USD")
