"""The baseline momentum rule: the executor trades it (``services/executor/strategies/momentum.py``),
and the risk simulator runs it in the loop (``tradewind risk simulate --with-strategies``).

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

from shared.paper.book import SimBook
from shared.schemas import BookUpdate, OrderEvent, OrderIntent
from shared.schemas.messages import Side
from shared.sections.executor import ExecutorSettings

FUNDING_MARGIN = 1.01  # a buy needs its notional free plus room for the fee (the guard's fee buffer)


class Momentum:
    name = "momentum"

    def __init__(
        self,
        settings: ExecutorSettings,
        run_id: str,
        free_balance: Callable[[str, str], float | None] | None = None,
    ) -> None:
        self.lookback = settings.strategy_lookback
        self.threshold = settings.strategy_threshold_bps / 10_000
        self.cooldown_ns = int(settings.strategy_cooldown_s * 1e9)
        self.notional = settings.strategy_notional
        self.quotes = frozenset(settings.strategy_quotes)
        self.free_balance = free_balance  # (venue, asset) -> free amount; None (or it returns None): unchecked
        self.run_id = run_id
        self._mids: dict[tuple[str, str], deque[float]] = {}
        self._last_order: dict[tuple[str, str], int] = {}
        self.held: dict[tuple[str, str], float] = {}
        self._seq = itertools.count(1)

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        return []

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        mid = book.mid()
        intent = self.on_mid(update.exchange, update.symbol, float(mid), update.recv_ts) if mid is not None else None
        return [intent] if intent else []

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
        elif self._lacks(exchange, quote, self.notional * FUNDING_MARGIN):
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

    def _lacks(self, venue: str, asset: str, need: float) -> bool:
        free = self.free_balance(venue, asset) if self.free_balance else None
        return free is not None and free < need
