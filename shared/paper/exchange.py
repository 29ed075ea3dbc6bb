"""The paper exchange: a deterministic venue simulator driven by recorded or live market data.

Time is whatever the caller says it is (integer ns): market data carries its own receive time,
orders are submitted "now". An order reaches the venue after the venue's order latency, its
reports reach us after the report latency (both plus seeded jitter), so the same inputs and seed
always give the same fills. Market/IOC orders walk the visible book; limit orders rest behind
the volume that was at their price when they arrived and fill only when trades reach them.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any, cast

from shared.paper.accounts import Accounts, InsufficientBalance, Wallet
from shared.paper.book import SimBook
from shared.paper.positions import Position
from shared.paper.rules import SymbolRules, permissive, split_symbol
from shared.schemas import BookUpdate, Fill, OrderEvent, OrderIntent, Trade
from shared.schemas.messages import OrderStatus, Side
from shared.sections.executor import TransferRule, VenueSim

ZERO = Decimal(0)
HOUR_NS = 3_600_000_000_000
INTEREST_QUANTUM = Decimal("1e-8")
AMOUNT_QUANTUM = Decimal("1e-8")  # venues book amounts and fees to 8 decimals


def dec(x: float | int | str | Decimal) -> Decimal:
    """Float → the Decimal of its shortest repr (0.1 → Decimal('0.1'), not its binary expansion)."""
    return x if isinstance(x, Decimal) else Decimal(repr(x) if isinstance(x, float) else str(x))


@dataclass(slots=True)
class PaperOrder:
    client_order_id: str
    order_id: str
    venue: str
    symbol: str
    side: str
    order_type: str
    amount: Decimal
    price: Decimal | None
    wallet: Wallet
    rules: SymbolRules
    reduce_only: bool = False
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # quote value filled
    locked: Decimal = ZERO  # still reserved for this order (quote for buys, base for sells)
    queue_ahead: float = 0.0  # visible volume ahead of us at our price
    traded_at_price: float = 0.0  # trades at our price since that level was last reported
    status: str = "new"
    arrived_ns: int = 0
    fill_seq: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    @property
    def lock_asset(self) -> str:
        return self.rules.quote if self.side == "buy" else self.rules.base


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    from_venue: str
    to_venue: str
    asset: str
    amount: Decimal  # what arrives
    fee: Decimal
    sent_ns: int
    settles_ns: int


@dataclass(frozen=True, slots=True)
class MarginNotice:
    """A margin call or liquidation, for the executor to publish."""

    kind: str  # margin_call | liquidation
    venue: str
    wallet: str
    margin_level: Decimal
    ts: int


@dataclass(order=True)
class _Scheduled:
    at: int
    seq: int
    action: Callable[[int], None] = field(compare=False)


class PaperExchange:
    """Every simulated venue: books, orders, wallets, margin, transfers."""

    def __init__(
        self,
        venues: dict[str, VenueSim],
        *,
        rules: dict[tuple[str, str], SymbolRules] | None = None,
        transfers: dict[str, TransferRule] | None = None,
        transfer_default: TransferRule | None = None,
        seed: int = 0,
        id_prefix: str = "P",
    ) -> None:
        self.venues = venues
        self.rules = dict(rules or {})
        self.transfer_rules = transfers or {}
        self.transfer_default = transfer_default or TransferRule()
        self.rng = random.Random(seed)
        self.id_prefix = id_prefix  # distinct per process start, so venue ids never repeat
        self.accounts = Accounts()
        self.books: dict[tuple[str, str], SimBook] = {}
        self.orders: dict[str, PaperOrder] = {}  # by client order id
        self.resting: dict[tuple[str, str], list[PaperOrder]] = {}
        self.positions: dict[tuple[str, str, str], Position] = {}
        self.transfers: dict[str, Transfer] = {}
        self.notices: list[MarginNotice] = []
        self.now = 0
        self._schedule: list[_Scheduled] = []
        self._outbox: list[tuple[int, int, OrderEvent]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._interest_hour: dict[tuple[str, str], int] = {}
        self._called: set[tuple[str, str]] = set()
        self._last_sent: dict[tuple[str, str], int] = {}

    # ---- configuration -------------------------------------------------------------------

    def venue(self, name: str) -> VenueSim:
        cfg = self.venues.get(name)
        if cfg is None:
            raise KeyError(f"paper exchange: venue {name!r} is not configured (known: {sorted(self.venues)})")
        return cfg

    def symbol_rules(self, venue: str, symbol: str) -> SymbolRules:
        r = self.rules.get((venue, symbol))
        if r is None:
            r = self.rules[(venue, symbol)] = permissive(symbol)
        return r

    def book(self, venue: str, symbol: str) -> SimBook:
        b = self.books.get((venue, symbol))
        if b is None:
            b = self.books[(venue, symbol)] = SimBook()
        return b

    def deposit(
        self, venue: str, asset: str, amount: float | Decimal, ts: int, wallet: str = "spot", ref: str = ""
    ) -> None:
        w = self.accounts.wallet(venue, wallet)
        self.accounts.credit(w, asset, dec(amount), "deposit", ref or f"deposit-{self.id_prefix}{next(self._ids)}", ts)

    def restore_balance(
        self, venue: str, wallet: str, asset: str, holdings: Decimal, borrowed: Decimal, interest: Decimal, now: int
    ) -> None:
        """Set a balance persisted by an earlier run (its ledger is already stored: no entry here)."""
        w = self.accounts.wallet(venue, wallet)
        w.balances[asset] = type(w.get(asset))(free=holdings, borrowed=borrowed, interest=interest)
        if borrowed:
            self._interest_hour[(venue, wallet)] = now // HOUR_NS

    def restore_order(self, intent: OrderIntent, order_id: str, filled: Decimal, cost: Decimal, now: int) -> None:
        """Put an order that was resting before a restart back on the book (at the back of its queue)."""
        self._arrive(intent, now, restored=(order_id, filled, cost))

    # ---- the clock ---------------------------------------------------------------------

    def _latency_ns(self, ms: float, venue: VenueSim) -> int:
        jitter = self.rng.uniform(0.0, venue.latency_jitter_ms) if venue.latency_jitter_ms else 0.0
        return int((ms + jitter) * 1_000_000)

    def _in_order(self, key: tuple[str, str], at: int) -> int:
        # One connection per venue and direction: jitter never reorders messages on it (TCP).
        at = max(at, self._last_sent.get(key, 0))
        self._last_sent[key] = at
        return at

    def _at(self, at: int, action: Callable[[int], None]) -> None:
        heapq.heappush(self._schedule, _Scheduled(at, next(self._seq), action))

    def advance(self, now: int) -> None:
        """Run everything due up to ``now``: order and cancel arrivals, settlements, interest."""
        while self._schedule and self._schedule[0].at <= now:
            item = heapq.heappop(self._schedule)
            self.now = max(self.now, item.at)
            item.action(item.at)
        self.now = max(self.now, now)
        self._accrue_interest(self.now)

    def poll(self, now: int) -> list[OrderEvent]:
        """Reports that have reached us by ``now``, in the order they were sent."""
        self.advance(now)
        out = []
        while self._outbox and self._outbox[0][0] <= now:
            out.append(heapq.heappop(self._outbox)[2])
        return out

    def take_reports(self, now: int) -> list[tuple[OrderEvent, int]]:
        """Every report the venue has sent by ``now``, with the time it reaches us (maybe later).

        For a driver that stores the venue's state as it changes and delays only the delivery.
        """
        self.advance(now)
        out = [(event, deliver) for deliver, _, event in sorted(self._outbox)]
        self._outbox.clear()
        return out

    def next_due(self) -> int | None:
        """When the next scheduled action or report falls due (for a driver that sleeps)."""
        times = [self._schedule[0].at] if self._schedule else []
        if self._outbox:
            times.append(self._outbox[0][0])
        return min(times) if times else None

    def _report(
        self, order: PaperOrder, status: str, at: int, fills: list[Fill] | None = None, reason: str = ""
    ) -> None:
        order.status = status
        cfg = self.venue(order.venue)
        avg = order.cost / order.filled if order.filled else ZERO
        event = OrderEvent(
            client_order_id=order.client_order_id,
            exchange=order.venue,
            symbol=order.symbol,
            side=cast(Side, order.side),
            status=cast(OrderStatus, status),
            ts=at,
            order_id=order.order_id,
            filled=float(order.filled),
            remaining=float(order.remaining) if status not in ("rejected", "cancelled", "filled") else 0.0,
            avg_price=float(avg),
            fills=fills or [],
            reason=reason,
        )
        deliver = self._in_order((order.venue, "report"), at + self._latency_ns(cfg.report_latency_ms, cfg))
        heapq.heappush(self._outbox, (deliver, next(self._seq), event))

    # ---- market data ---------------------------------------------------------------------

    def on_book(self, update: BookUpdate) -> None:
        """Apply a book update; resting orders at changed levels lose queue to cancels pro rata."""
        self.advance(update.recv_ts)
        book = self.book(update.exchange, update.symbol)
        resting = self.resting.get((update.exchange, update.symbol))
        if resting and not update.snapshot:
            changed = {"buy": dict(update.bids), "sell": dict(update.asks)}
            for order in resting:
                new = changed[order.side].get(float(order.price))  # type: ignore[arg-type]
                if new is not None:
                    old = book.side(order.side).get(float(order.price), 0.0)  # type: ignore[arg-type]
                    self._requeue(order, old, new)
        elif resting:
            for order in resting:
                order.queue_ahead = min(order.queue_ahead, book.side(order.side).get(float(order.price), 0.0))  # type: ignore[arg-type]
        book.apply(update)
        self._check_margin(update.exchange, update.recv_ts)

    @staticmethod
    def _requeue(order: PaperOrder, old: float, new: float) -> None:
        # A decrease trades do not explain is cancels, spread over what the trades left at the level.
        after_trades = old - order.traded_at_price
        cancelled = max(0.0, after_trades - new)
        if cancelled and after_trades > 0:
            order.queue_ahead -= cancelled * order.queue_ahead / after_trades
        order.queue_ahead = max(0.0, min(order.queue_ahead, new))
        order.traded_at_price = 0.0

    def on_trade(self, trade: Trade) -> None:
        """A market trade fills resting orders it reaches, after the volume queued ahead of them."""
        self.advance(trade.recv_ts)
        resting = self.resting.get((trade.exchange, trade.symbol))
        if not resting:
            return
        maker_side = "buy" if trade.side == "sell" else "sell"
        left = trade.amount
        book_orders = sorted(
            (o for o in resting if o.side == maker_side),
            key=lambda o: (-o.price if maker_side == "buy" else o.price, o.arrived_ns),  # type: ignore[operator]
        )
        for order in book_orders:
            if left <= 0:
                break
            price = float(order.price)  # type: ignore[arg-type]
            crossed = trade.price < price if maker_side == "buy" else trade.price > price
            if not crossed and trade.price != price:
                continue
            available = left
            if not crossed:  # at our level: the queue ahead of us trades first
                order.traded_at_price += trade.amount
                used = min(order.queue_ahead, available)
                order.queue_ahead -= used
                available -= used
            qty = min(order.remaining, dec(available).quantize(AMOUNT_QUANTUM, rounding=ROUND_DOWN))
            if qty > 0:
                left -= float(qty)
                self._fill(order, [(order.price, qty)], "maker", trade.recv_ts)  # type: ignore[list-item]
        self._check_margin(trade.exchange, trade.recv_ts)

    # ---- orders --------------------------------------------------------------------------

    def submit(self, intent: OrderIntent, now: int) -> None:
        """Send an order (or a cancel) to the venue; it arrives after the order latency."""
        self.advance(now)
        cfg = self.venue(intent.exchange)
        at = self._in_order((intent.exchange, "order"), now + self._latency_ns(cfg.order_latency_ms, cfg))
        if intent.cancel:
            self._at(at, lambda t: self._arrive_cancel(intent.client_order_id, t))
        else:
            self._at(at, lambda t: self._arrive(intent, t))

    def _arrive_cancel(self, client_order_id: str, at: int) -> None:
        order = self.orders.get(client_order_id)
        if order is None or order.status in ("filled", "cancelled", "rejected"):
            return
        self._close(order)
        self._report(order, "cancelled", at)

    def _close(self, order: PaperOrder) -> None:
        if order.locked:
            self.accounts.unlock(order.wallet, order.lock_asset, order.locked)
            order.locked = ZERO
        resting = self.resting.get((order.venue, order.symbol))
        if resting and order in resting:
            resting.remove(order)

    def _arrive(self, intent: OrderIntent, at: int, restored: tuple[str, Decimal, Decimal] | None = None) -> None:
        if intent.client_order_id in self.orders:
            return  # the venue refuses a duplicate client order id; the first order's reports stand
        wallet_name = "spot"
        if intent.margin_mode == "cross":
            wallet_name = "cross"
        elif intent.margin_mode == "isolated":
            wallet_name = f"isolated:{intent.symbol}"
        rules = self.symbol_rules(intent.exchange, intent.symbol)
        order = PaperOrder(
            intent.client_order_id,
            f"{self.id_prefix}{next(self._ids)}",
            intent.exchange,
            intent.symbol,
            intent.side,
            intent.order_type,
            dec(intent.amount),
            dec(intent.price) if intent.price is not None else None,
            self.accounts.wallet(intent.exchange, wallet_name),
            rules,
            intent.reduce_only,
            arrived_ns=at,
        )
        self.orders[order.client_order_id] = order
        book = self.book(order.venue, order.symbol)
        if restored is not None:
            order.order_id, order.filled, order.cost = restored
            remaining = order.remaining
            need = remaining * order.price if order.side == "buy" else remaining  # type: ignore[operator]
            self.accounts.lock(order.wallet, order.lock_asset, need)
            order.locked = need
            order.queue_ahead = book.side(order.side).get(float(order.price), 0.0)  # type: ignore[arg-type]
            self.resting.setdefault((order.venue, order.symbol), []).append(order)
            return
        price = None if order.order_type == "market" else order.price
        reason = rules.check(price, order.amount, book.mid())
        if reason is None and order.order_type != "market" and order.price is None:
            reason = "venue.price_filter"
        if reason:
            self._report(order, "rejected", at, reason=reason)
            return
        crossing = book.walk(order.side, order.amount, order.price if order.order_type != "market" else None)
        if order.order_type == "post_only" and crossing:
            self._report(order, "rejected", at, reason="venue.post_only_would_take")
            return
        cfg = self.venue(order.venue)
        try:
            self._reserve(order, crossing, cfg, at)
        except InsufficientBalance:
            self._report(order, "rejected", at, reason="venue.insufficient_balance")
            return
        self._report(order, "accepted", at)
        if crossing:
            book.take(order.side, crossing)
            self._fill(order, crossing, "taker", at)
        if order.status in ("filled",):
            return
        if order.order_type in ("market", "ioc"):
            self._close(order)
            self._report(order, "cancelled", at, reason="venue.ioc_unfilled" if order.filled == 0 else "")
            return
        order.queue_ahead = book.side(order.side).get(float(order.price), 0.0)  # type: ignore[arg-type]
        self.resting.setdefault((order.venue, order.symbol), []).append(order)

    def _reserve(self, order: PaperOrder, crossing: list[tuple[Decimal, Decimal]], cfg: VenueSim, at: int) -> None:
        """Lock what the order can spend, borrowing the shortfall in a margin wallet."""
        if order.side == "sell":
            need = order.amount if order.order_type != "market" else sum((q for _, q in crossing), ZERO)
        else:
            if order.order_type == "market":
                need = sum((p * q for p, q in crossing), ZERO)
            else:
                need = order.price * order.amount  # type: ignore[operator]
            if cfg.fee_in == "quote":
                need += need * dec(max(cfg.taker_fee, cfg.maker_fee))
        asset = order.lock_asset
        free = order.wallet.get(asset).free
        if free < need:
            if not order.wallet.is_margin:
                raise InsufficientBalance(f"{order.venue}: {asset} free {free} < {need}")
            self.borrow(order.venue, order.wallet.name, asset, need - free, at)
        self.accounts.lock(order.wallet, asset, need)
        order.locked = need

    def _fill(self, order: PaperOrder, legs: Iterable[tuple[Decimal, Decimal]], liquidity: str, at: int) -> None:
        cfg = self.venue(order.venue)
        rate = dec(cfg.taker_fee if liquidity == "taker" else cfg.maker_fee)
        base, quote = order.rules.base, order.rules.quote
        acc, w = self.accounts, order.wallet
        fills = []
        for price, qty in legs:
            order.fill_seq += 1
            fill_id = f"{order.order_id}-{order.fill_seq}"
            notional = price * qty
            if order.side == "buy":
                received, got = base, qty
                acc.spend_locked(w, quote, notional, "fill", fill_id, at)
                order.locked -= notional
            else:
                received, got = quote, notional
                acc.spend_locked(w, base, qty, "fill", fill_id, at)
                order.locked -= qty
            acc.credit(w, received, got, "fill", fill_id, at)
            fee_asset = received if cfg.fee_in == "received" else quote
            fee = ((qty if fee_asset == base else notional) * rate).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)
            if fee_asset == quote and order.side == "buy":
                acc.spend_locked(w, quote, fee, "fee", fill_id, at)
                order.locked -= fee
            else:
                acc.credit(w, fee_asset, -fee, "fee", fill_id, at)
            order.filled += qty
            order.cost += notional
            self._position(order).apply_fill(order.side, price, qty)
            fills.append(Fill(fill_id, float(price), float(qty), float(fee), fee_asset, at, liquidity))  # type: ignore[arg-type]
        if order.remaining <= 0:
            self._close(order)
            if order.reduce_only and w.is_margin:
                self.repay(order.venue, w.name, order.rules.base if order.side == "buy" else quote, None, at)
            self._report(order, "filled", at, fills)
        else:
            self._report(order, "partially_filled", at, fills)

    def _position(self, order: PaperOrder) -> Position:
        mode = order.wallet.name.split(":", 1)[0]
        key = (order.venue, order.symbol, mode)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(order.venue, order.symbol, mode)
        return pos

    def open_orders(self, venue: str | None = None) -> list[PaperOrder]:
        return [o for (v, _), lst in self.resting.items() if venue is None or v == venue for o in lst]

    # ---- margin ---------------------------------------------------------------------------

    def borrow(self, venue: str, wallet: str, asset: str, amount: float | Decimal, now: int) -> None:
        """Borrow into a margin wallet; refused past the venue's max leverage. Interest starts now."""
        w = self.accounts.wallet(venue, wallet)
        if not w.is_margin:
            raise InsufficientBalance(f"{venue}: cannot borrow into the spot wallet")
        amount = dec(amount)
        cfg = self.venue(venue)
        price = self.asset_price(venue, asset, cfg.valuation_asset)
        assets, liabilities = self._wallet_values(w, cfg.valuation_asset)
        if price is None or assets is None:
            raise InsufficientBalance(f"{venue}/{wallet}: no price to value {asset} in {cfg.valuation_asset}")
        equity = assets - liabilities
        if liabilities + amount * price > equity * (dec(cfg.max_leverage) - 1):
            raise InsufficientBalance(f"{venue}/{wallet}: borrowing {amount} {asset} exceeds {cfg.max_leverage}x")
        self.accounts.borrow(w, asset, amount)
        # Binance charges the first hour's interest when the loan is made.
        self.accounts.accrue_interest(
            w, asset, self._hourly_interest(cfg, asset, amount), f"interest-{self.id_prefix}{next(self._ids)}", now
        )
        self._interest_hour.setdefault((venue, wallet), now // HOUR_NS)

    def repay(self, venue: str, wallet: str, asset: str, amount: float | Decimal | None, now: int) -> Decimal:
        """Repay interest then principal from free balance (all of it when ``amount`` is None)."""
        w = self.accounts.wallet(venue, wallet)
        bal = w.get(asset)
        want = bal.borrowed + bal.interest if amount is None else dec(amount)
        return self.accounts.repay(w, asset, want)

    @staticmethod
    def _hourly_interest(cfg: VenueSim, asset: str, borrowed: Decimal) -> Decimal:
        # Rounded up to the venue's 8 decimals, so the ledger stays exact (no repeating fractions).
        rate = dec(cfg.interest_daily.get(asset, cfg.interest_daily_default))
        return (borrowed * rate / 24).quantize(INTEREST_QUANTUM, rounding=ROUND_UP)

    def _accrue_interest(self, now: int) -> None:
        hour = now // HOUR_NS
        for key, last in list(self._interest_hour.items()):
            if hour <= last:
                continue
            w = self.accounts.wallet(*key)
            cfg = self.venue(w.venue)
            for h in range(last + 1, hour + 1):
                for asset, bal in w.balances.items():
                    if bal.borrowed > 0:
                        ref = f"interest-{w.name}-{h}"
                        self.accounts.accrue_interest(
                            w, asset, self._hourly_interest(cfg, asset, bal.borrowed), ref, h * HOUR_NS
                        )
            self._interest_hour[key] = hour

    def asset_price(self, venue: str, asset: str, in_asset: str) -> Decimal | None:
        """Mid price of ``asset`` in ``in_asset`` on ``venue`` (direct or inverted book), if known."""
        if asset == in_asset:
            return Decimal(1)
        mid = self.books[(venue, f"{asset}/{in_asset}")].mid() if (venue, f"{asset}/{in_asset}") in self.books else None
        if mid:
            return mid
        inv = self.books.get((venue, f"{in_asset}/{asset}"))
        m = inv.mid() if inv else None
        return 1 / m if m else None

    def _wallet_values(self, w: Wallet, in_asset: str) -> tuple[Decimal | None, Decimal]:
        assets = liabilities = ZERO
        for asset, bal in w.balances.items():
            if not (bal.free or bal.locked or bal.borrowed or bal.interest):
                continue
            price = self.asset_price(w.venue, asset, in_asset)
            if price is None:
                return None, liabilities
            assets += (bal.free + bal.locked) * price
            liabilities += (bal.borrowed + bal.interest) * price
        return assets, liabilities

    def margin_level(self, venue: str, wallet: str) -> Decimal | None:
        """Total asset value / (borrowed + interest), Binance's definition; None with no debt."""
        w = self.accounts.wallet(venue, wallet)
        assets, liabilities = self._wallet_values(w, self.venue(venue).valuation_asset)
        if assets is None or liabilities <= 0:
            return None
        return assets / liabilities

    def liquidation_price(self, venue: str, symbol: str) -> Decimal | None:
        """Price of BASE at which the isolated BASE/QUOTE wallet reaches the liquidation level."""
        base, quote = split_symbol(symbol)
        w = self.accounts.wallets.get((venue, f"isolated:{symbol}"))
        if w is None:
            return None
        b, q = w.get(base), w.get(quote)
        t = dec(self.venue(venue).liquidation_level)
        denom = (b.free + b.locked) - t * (b.borrowed + b.interest)
        if denom == 0:
            return None
        price = (t * (q.borrowed + q.interest) - (q.free + q.locked)) / denom
        return price if price > 0 else None

    def _check_margin(self, venue: str, now: int) -> None:
        cfg = self.venues.get(venue)
        if cfg is None:
            return
        for (v, name), w in list(self.accounts.wallets.items()):
            if v != venue or not w.is_margin:
                continue
            level = self.margin_level(v, name)
            if level is None:
                self._called.discard((v, name))
                continue
            if level <= dec(cfg.liquidation_level):
                self.notices.append(MarginNotice("liquidation", v, name, level, now))
                self._liquidate(w, cfg, now)
                self._called.discard((v, name))
            elif level <= dec(cfg.margin_call_level):
                if (v, name) not in self._called:
                    self._called.add((v, name))
                    self.notices.append(MarginNotice("margin_call", v, name, level, now))
            else:
                self._called.discard((v, name))

    def _liquidate(self, w: Wallet, cfg: VenueSim, now: int) -> None:
        """Cancel the wallet's orders, buy back borrowed assets, sell the rest, repay everything."""
        for order in [o for o in self.open_orders(w.venue) if o.wallet is w]:
            self._close(order)
            self._report(order, "cancelled", now, reason="venue.liquidation")
        v = cfg.valuation_asset
        for asset, bal in list(w.balances.items()):
            if asset == v:
                continue
            owed = bal.borrowed + bal.interest - bal.free
            if owed > 0 and cfg.fee_in == "received":  # the fee comes out of what is bought back
                owed = (owed / (1 - dec(cfg.taker_fee))).quantize(INTEREST_QUANTUM, rounding=ROUND_UP)
            if owed > 0:
                self._liquidation_order(w, f"{asset}/{v}", "buy", owed, now)
            elif bal.borrowed + bal.interest == 0 and bal.free > 0 and w.get(v).borrowed + w.get(v).interest > 0:
                self._liquidation_order(w, f"{asset}/{v}", "sell", bal.free, now)
        for asset in list(w.balances):
            self.accounts.repay(w, asset, w.get(asset).borrowed + w.get(asset).interest)

    def _liquidation_order(self, w: Wallet, symbol: str, side: str, amount: Decimal, now: int) -> None:
        book = self.book(w.venue, symbol)
        legs = book.walk(side, amount, None)
        if not legs:
            return
        rules = self.symbol_rules(w.venue, symbol)
        order = PaperOrder(
            f"liq-{self.id_prefix}{next(self._ids)}",
            f"L{self.id_prefix}{next(self._ids)}",
            w.venue,
            symbol,
            side,
            "market",
            sum((q for _, q in legs), ZERO),
            None,
            w,
            rules,
            arrived_ns=now,
        )
        self.orders[order.client_order_id] = order
        need = sum((p * q for p, q in legs), ZERO) if side == "buy" else order.amount
        if self.venue(w.venue).fee_in == "quote" and side == "buy":
            need += need * dec(self.venue(w.venue).taker_fee)
        need = min(need, w.get(order.lock_asset).free)
        self.accounts.lock(w, order.lock_asset, need)
        order.locked = need
        book.take(side, legs)
        self._fill(order, legs, "taker", now)

    # ---- transfers -----------------------------------------------------------------------

    def transfer(self, from_venue: str, to_venue: str, asset: str, amount: float | Decimal, now: int) -> Transfer:
        """Withdraw from one venue's spot wallet; it arrives on the other after the asset's settle time."""
        self.advance(now)
        rule = self.transfer_rules.get(asset, self.transfer_default)
        amount, fee = dec(amount), dec(rule.fee)
        if amount <= fee:
            raise ValueError(f"transfer of {amount} {asset} does not cover the {fee} {asset} fee")
        tid = f"T{self.id_prefix}{next(self._ids)}"
        src = self.accounts.wallet(from_venue, "spot")
        self.accounts.credit(src, asset, -(amount - fee), "transfer", tid, now)
        self.accounts.credit(src, asset, -fee, "transfer_fee", tid, now)
        t = Transfer(tid, from_venue, to_venue, asset, amount - fee, fee, now, now + int(rule.settle_s * 1e9))
        self.transfers[tid] = t
        self._at(t.settles_ns, lambda at: self._settle(t, at))
        return t

    def move(self, venue: str, asset: str, amount: float | Decimal, from_wallet: str, to_wallet: str, now: int) -> str:
        """Internal transfer between two wallets of one venue (spot → cross margin): instant, no fee,
        as on Binance; the margin levels are judged again at once. Returns the transfer's id."""
        self.advance(now)
        tid = f"M{self.id_prefix}{next(self._ids)}"
        self.accounts.credit(self.accounts.wallet(venue, from_wallet), asset, -dec(amount), "transfer", tid, now)
        self.accounts.credit(self.accounts.wallet(venue, to_wallet), asset, dec(amount), "transfer", tid, now)
        self._check_margin(venue, now)
        return tid

    def _settle(self, t: Transfer, at: int) -> None:
        self.accounts.credit(self.accounts.wallet(t.to_venue, "spot"), t.asset, t.amount, "transfer", t.transfer_id, at)
        self.transfers.pop(t.transfer_id, None)

    def snapshot(self) -> dict[str, Any]:
        """Balances per venue/wallet/asset as strings (exact), for status and tests."""
        return {
            f"{v}/{n}": {
                a: {k: str(getattr(b, k)) for k in ("free", "locked", "borrowed", "interest")}
                for a, b in w.balances.items()
            }
            for (v, n), w in self.accounts.wallets.items()
        }
