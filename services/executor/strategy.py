"""A baseline momentum strategy, so the stack trades before the RL policy and arbitrage exist.

On each book update it compares the mid with the mid ``lookback`` updates ago; a move larger
than ``threshold_bps`` sends a small market order in the move's direction (at most one per
``cooldown_s`` per market). It only sells what it bought, so spot sells never lack the asset.

Its notional is a value in ``strategy_quotes`` (USD-like quotes by default): a market quoted in
anything else (BTC, GBP, ...) is not traded, since 50 BTC is not "a small order". A buy is only
sent when the venue's free quote balance covers it, so it never asks for money it lacks.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from shared.schemas import OrderIntent
from shared.schemas.messages import Side
from shared.sections.executor import ExecutorSettings

FUNDING_MARGIN = 1.01  # a buy needs its notional free plus room for the fee (the guard's fee buffer)


class MomentumStrategy:
    name = "momentum"

    def __init__(
        self,
        settings: ExecutorSettings,
        run_id: str,
        free_balance: Callable[[str, str], float] | None = None,
    ) -> None:
        self.lookback = settings.strategy_lookback
        self.threshold = settings.strategy_threshold_bps / 10_000
        self.cooldown_ns = int(settings.strategy_cooldown_s * 1e9)
        self.notional = settings.strategy_notional
        self.quotes = frozenset(settings.strategy_quotes)
        self.free_balance = free_balance  # (venue, asset) -> free amount; None: unknown, not checked
        self.run_id = run_id
        self._mids: dict[tuple[str, str], deque[float]] = {}
        self._last_order: dict[tuple[str, str], int] = {}
        self.held: dict[tuple[str, str], float] = {}
        self._seq = itertools.count(1)

    def on_mid(self, exchange: str, symbol: str, mid: float, now: int) -> OrderIntent | None:
        """Feed the mid after a book update; return an intent when the signal fires."""
        key = (exchange, symbol)
        quote = symbol.partition("/")[2]
        if quote not in self.quotes:
            return None
        mids = self._mids.setdefault(key, deque(maxlen=self.lookback))
        mids.append(mid)
        if len(mids) < self.lookback:
            return None
        move = mid / mids[0] - 1
        if abs(move) < self.threshold or now - self._last_order.get(key, 0) < self.cooldown_ns:
            return None
        amount = float(f"{self.notional / mid:.6g}")
        side: Side = "buy" if move > 0 else "sell"
        if side == "sell":
            amount = min(amount, self.held.get(key, 0.0))
            if amount <= 0:
                return None
        elif self.free_balance is not None and self.free_balance(exchange, quote) < self.notional * FUNDING_MARGIN:
            return None
        self.held[key] = self.held.get(key, 0.0) + (amount if side == "buy" else -amount)
        self._last_order[key] = now
        mids.clear()
        return OrderIntent(
            f"{self.name}-{self.run_id}-{next(self._seq)}",
            exchange,
            symbol,
            side,
            "market",
            amount,
            now,
            strategy=self.name,
        )
