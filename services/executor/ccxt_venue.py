"""Live orders through ccxt, behind the same ``Gateway`` interface as the paper exchange.

An order's outcome is classified, never guessed (``ccxt_outcomes``): a definite refusal of the venue
is a rejection; anything else while placing makes it ``unknown``, reported so and looked up by client
order id until the venue says what became of it. Order updates come from the private websocket (ccxt
pro ``watch_orders``); open orders are read over REST often while it is down and now and then while it
is up (a report it never sent). The account (every wallet, positions, the reconciliation) is read
through ``ccxt_account``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import ccxt

from services.executor import ccxt_account as account
from services.executor.ccxt_account import make_exchange
from services.executor.ccxt_audit import AuditReference
from services.executor.ccxt_outcomes import STATUS, Lookups, is_refusal, new_fills
from services.executor.gateway import Gateway, Report, StoredOrder, TransferRefused, VenueBalance, VenueOrder
from shared.bounded import LruDict
from shared.ids import invalid_reason
from shared.paper import LedgerEntry, dec
from shared.paper.positions import Position
from shared.paper.rules import split_symbol
from shared.schemas import Fill, OrderEvent, OrderIntent
from shared.schemas.messages import OrderStatus, Side
from shared.sections.executor import CcxtVenue

log = logging.getLogger(__name__)


DONE_KEPT = 100_000  # finished orders whose last fill total is remembered


@dataclass(slots=True)
class Tracked:
    venue: str
    symbol: str
    venue_id: str
    side: str
    margin_mode: str | None


class CcxtGateway(Gateway):
    """Orders, balances, positions, margin loans and allow-listed withdrawals on real venues via ccxt
    (the venue holds the truth: the simulated-venue hooks keep ``Gateway``'s defaults)."""

    def __init__(
        self,
        venues: dict[str, CcxtVenue],
        exchange_factory: Callable[[CcxtVenue], Any] = make_exchange,
        done_kept: int = DONE_KEPT,
    ) -> None:
        self.venues = venues
        self.clients = {name: exchange_factory(v) for name, v in venues.items()}
        self._open: dict[str, Tracked] = {}
        self._early: dict[str, list[dict[str, Any]]] = {}  # orders being placed -> reports that beat the answer
        self._seen_filled: dict[str, Decimal] = {}  # open orders: cumulative filled seen so far
        # finished orders, for the late or duplicated reports that follow the last one (bounded)
        self._done_filled: LruDict[str, Decimal] = LruDict(done_kept)
        self._events: list[OrderEvent] = []
        self._ledger: list[LedgerEntry] = []
        self._positions: list[Position] = []
        self._audit = AuditReference()
        self._started_ms = int(time.time() * 1000)
        self.lookups = Lookups(venues, self.client, self._record, self._event, self._started_ms)
        self._streams: dict[str, asyncio.Task[None]] = {}
        self.stream_up: dict[str, bool] = {}
        self._last_rest: dict[str, float] = {}  # venue -> when its open orders were last read over REST
        self._wake: Callable[[], None] = lambda: None

    def client(self, venue: str) -> Any:
        c = self.clients.get(venue)
        if c is None:
            raise KeyError(f"venue {venue!r} is not a configured live venue (known: {sorted(self.clients)})")
        return c

    # ---- orders ------------------------------------------------------------------------------

    def _event(self, intent: OrderIntent, status: str, reason: str) -> None:
        ts = time.time_ns()
        self._events.append(
            OrderEvent(
                intent.client_order_id,
                intent.exchange,
                intent.symbol,
                intent.side,
                cast(OrderStatus, status),
                ts,
                reason=reason,
            )
        )

    async def submit(self, intent: OrderIntent) -> None:
        with self._audit.acting(intent.exchange):
            if intent.cancel:
                await self._cancel(intent)
            else:
                await self._place(intent)

    async def _place(self, intent: OrderIntent) -> None:
        client = self.client(intent.exchange)
        cid = intent.client_order_id
        why = invalid_reason(cid)
        if why:
            log.warning("%s: %s; not sent", intent.exchange, why)
            self._event(intent, "rejected", "venue.invalid_client_order_id")
            return
        params = self._params(intent)
        kind = "market" if intent.order_type == "market" else "limit"
        borrowed = Decimal(0)
        if intent.margin_mode and not intent.reduce_only:
            try:
                borrowed = await self._borrow_for(intent)
            except Exception as exc:  # nothing was sent: the order is refused here, definitely
                log.warning("%s: borrowing for %s failed: %s", intent.exchange, cid, exc)
                self._event(intent, "rejected", f"venue.borrow_failed.{type(exc).__name__}")
                return
        sent_ms = int(client.milliseconds())
        self._early[cid] = []
        try:
            order = await client.create_order(intent.symbol, kind, intent.side, intent.amount, intent.price, params)
        except Exception as exc:
            name = type(exc).__name__
            if is_refusal(exc):
                log.warning("%s refused %s: %s", intent.exchange, cid, exc)
                self._event(intent, "rejected", f"venue.{name}")
                if borrowed:
                    await self._repay_quietly(intent, borrowed)
                return
            log.warning("%s: outcome of %s unknown after %s; looking it up", intent.exchange, cid, name)
            self._event(intent, "unknown", f"venue.{name}")
            self.lookups.start(intent, sent_ms)  # a lookup reads the whole order: early reports add nothing
            return
        finally:
            early = self._early.pop(cid, [])
        self._record(cid, intent.exchange, intent.symbol, intent.side, order, intent.margin_mode)
        for pushed in early:  # the socket beat the answer (a fill right after acceptance): they count after it
            self._record(cid, intent.exchange, intent.symbol, intent.side, pushed, intent.margin_mode)

    def _params(self, intent: OrderIntent) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        if intent.order_type == "ioc":
            params["timeInForce"] = "IOC"
        if intent.order_type == "post_only":
            params["postOnly"] = True
        if intent.margin_mode:
            params["marginMode"] = intent.margin_mode
        if intent.reduce_only:
            market = self.client(intent.exchange).markets.get(intent.symbol) or {}
            if market.get("contract"):
                params["reduceOnly"] = True
            elif intent.margin_mode and self.venues[intent.exchange].ccxt_id.startswith("binance"):
                params["sideEffectType"] = "AUTO_REPAY"  # Binance margin: the proceeds repay the loan
        return params

    async def _borrow_for(self, intent: OrderIntent) -> Decimal:
        """Borrow what a margin order lacks (base for a sell, quote for a priced buy); return the amount."""
        base, quote = split_symbol(intent.symbol)
        isolated = intent.margin_mode == "isolated"
        client = self.client(intent.exchange)
        bal = await client.fetch_balance({"type": "margin", "marginMode": intent.margin_mode})
        if isolated:
            bal = bal.get(intent.symbol) or {}
        if intent.side == "sell":
            asset, need = base, dec(intent.amount)
        elif intent.price is not None:
            asset, need = quote, dec(intent.amount) * dec(intent.price)
        else:
            return Decimal(0)
        free = dec((bal.get(asset) or {}).get("free") or 0)
        short = need - free
        if short <= 0:
            return Decimal(0)
        await self.borrow(intent.exchange, asset, short, self._wallet(intent.symbol, intent.margin_mode))
        return short

    async def _repay_quietly(self, intent: OrderIntent, amount: Decimal) -> None:
        base, quote = split_symbol(intent.symbol)
        asset = base if intent.side == "sell" else quote
        try:
            await self.repay(intent.exchange, asset, amount, self._wallet(intent.symbol, intent.margin_mode))
        except Exception:
            log.exception("%s: repaying %s %s after a refused order failed", intent.exchange, amount, asset)

    async def _cancel(self, intent: OrderIntent) -> None:
        known = self._open.get(intent.client_order_id)
        looked_up = self.lookups.pending.get(intent.client_order_id)
        margin_mode = known.margin_mode if known else looked_up.intent.margin_mode if looked_up else None
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        if margin_mode:  # the venue keeps a margin order on its margin side
            params["marginMode"] = margin_mode
        try:
            order = await self.client(intent.exchange).cancel_order(
                known.venue_id if known else None, intent.symbol, params
            )
        except ccxt.OrderNotFound as exc:  # already filled or cancelled: read what became of it now
            log.warning("%s: cancel of %s failed: %s", intent.exchange, intent.client_order_id, exc)
            if known is not None:  # not ours to read otherwise
                await self._read_open(intent.client_order_id, known)
            return
        except Exception as exc:  # the order's own reports still say what became of it
            log.warning("%s: cancel of %s failed: %s", intent.exchange, intent.client_order_id, exc)
            return
        self._record(intent.client_order_id, intent.exchange, intent.symbol, intent.side, order, margin_mode)

    @staticmethod
    def _wallet(symbol: str, margin_mode: str | None) -> str:
        if margin_mode == "isolated":
            return f"isolated:{symbol}"
        return "cross" if margin_mode == "cross" else "spot"

    def _record(
        self, cid: str, venue: str, symbol: str, side: str, order: dict[str, Any], margin_mode: str | None
    ) -> None:
        self._audit.reported(venue)
        status = STATUS.get(order.get("status") or "open", "accepted")
        filled = dec(order.get("filled") or 0)
        seen = self._seen_filled
        before = seen[cid] if cid in seen else self._done_filled.get(cid, Decimal(0))
        if filled < before:
            return  # an older update arriving after a newer one
        if cid not in seen and cid in self._done_filled and status in ("accepted", "partially_filled"):
            return  # finished here already: a stale read or report does not reopen it
        amount = dec(order.get("amount") or 0)
        base, quote = split_symbol(symbol)
        fills = new_fills(order, before, filled, quote)
        wallet = self._wallet(symbol, margin_mode)
        for f in fills:
            self._ledger_fill(venue, wallet, side, base, quote, f)
        self._seen_filled[cid] = filled
        if status == "accepted" and filled > 0:
            status = "partially_filled"
        if status in ("accepted", "partially_filled"):
            self._open[cid] = Tracked(venue, symbol, str(order.get("id")), side, margin_mode)
        else:
            self._open.pop(cid, None)
            self._done_filled[cid] = self._seen_filled.pop(cid, filled)  # only open orders stay unbounded
        self._events.append(
            OrderEvent(
                cid,
                venue,
                symbol,
                cast(Side, side),
                cast(OrderStatus, status),
                int(order.get("lastUpdateTimestamp") or order.get("timestamp") or 0) * 1_000_000,
                order_id=str(order.get("id") or ""),
                filled=float(filled),
                remaining=float(max(amount - filled, Decimal(0))),
                avg_price=float(order.get("average") or 0),
                fills=fills,
            )
        )

    def _entry(self, venue: str, wallet: str, asset: str, delta: Decimal, kind: str, ref: str, ts: int) -> None:
        self._ledger.append(LedgerEntry(venue, wallet, asset, delta, kind, ref, ts))
        self._audit.moved(venue, wallet, asset, delta)

    def _ledger_fill(self, venue: str, wallet: str, side: str, base: str, quote: str, f: Fill) -> None:
        qty, notional = dec(f.amount), dec(f.price) * dec(f.amount)
        sign = 1 if side == "buy" else -1
        self._entry(venue, wallet, base, sign * qty, "fill", f.fill_id, f.ts)
        self._entry(venue, wallet, quote, -sign * notional, "fill", f.fill_id, f.ts)
        if f.fee:
            self._entry(venue, wallet, f.fee_asset, -dec(f.fee), "fee", f.fill_id, f.ts)

    # ---- reports -----------------------------------------------------------------------------

    async def poll(self) -> list[Report]:
        """Resolve unknown outcomes that are due, read open orders over REST (often while the websocket is
        down, every ``rest_check_s`` while it is up), and return every report gathered since the last call."""
        self._start_streams()
        await self.lookups.resolve_due(int(time.time() * 1000))
        now = time.monotonic()
        for venue in self.clients:
            cfg = self.venues[venue]
            # while the socket is up, still now and then: a report it never sent (a fill that came while it
            # subscribed; the venue replays nothing) would leave the order open here for good
            every = cfg.rest_check_s if self.stream_up.get(venue) else cfg.rest_poll_s
            if now - self._last_rest.get(venue, float("-inf")) >= every:
                self._last_rest[venue] = now
                await self._refresh_rest(venue)
        events, self._events = self._events, []
        return [(e, 0) for e in events]

    async def _refresh_rest(self, venue: str) -> None:
        for cid, t in [(c, t) for c, t in self._open.items() if t.venue == venue]:
            await self._read_open(cid, t)

    async def _read_open(self, cid: str, t: Tracked) -> None:
        """Read one of our open orders over REST; record it if it moved since the last report."""
        params = {"marginMode": t.margin_mode} if t.margin_mode else {}
        try:
            order = await self.client(t.venue).fetch_order(t.venue_id, t.symbol, params)
        except Exception as exc:  # the next round tries again
            log.warning("%s: refreshing %s failed: %s", t.venue, cid, exc)
            return
        if dec(order.get("filled") or 0) != self._seen_filled.get(cid) or order.get("status") != "open":
            self._record(cid, t.venue, t.symbol, t.side, order, t.margin_mode)

    def _start_streams(self) -> None:
        for venue, cfg in self.venues.items():
            task = self._streams.get(venue)
            if cfg.websocket and (task is None or task.done()) and hasattr(self.clients[venue], "watch_orders"):
                self._streams[venue] = asyncio.create_task(self._stream(venue), name=f"ccxt-orders-{venue}")

    async def _stream(self, venue: str) -> None:
        """Order updates from the venue's private websocket; on failure REST polling takes over until it is back."""
        client, delay = self.client(venue), 0.5
        while True:
            try:
                watching = asyncio.ensure_future(client.watch_orders())
                await asyncio.sleep(0)  # let the subscription go out before we count on it
                while True:
                    if not self.stream_up.get(venue):
                        await self._refresh_rest(venue)  # catch up what happened while it was down
                        self.stream_up[venue] = True
                    for o in await watching:
                        self._on_stream_order(venue, o)
                    delay = 0.5
                    watching = asyncio.ensure_future(client.watch_orders())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stream_up[venue] = False
                log.warning("%s: private websocket failed (%s); REST polling until it is back", venue, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _on_stream_order(self, venue: str, o: dict[str, Any]) -> None:
        cid = o.get("clientOrderId") or ""
        t = self._open.get(cid)
        if t is not None and t.venue == venue:
            self._record(cid, venue, t.symbol, t.side, o, t.margin_mode)
            self._wake()  # the host polls now, not at its idle period
        elif cid in self._early:  # ours, its answer still on the way: counted once the answer is recorded
            log.debug("%s: a report for %s came before the answer to placing it", venue, cid)
            self._early[cid].append(dict(o))
        elif cid not in self._done_filled:  # placed by hand on the venue, or one this run lost track of
            log.info("%s: a report for %s (%s), which this run does not follow", venue, cid, o.get("status"))

    def on_report(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def drain_ledger(self) -> list[LedgerEntry]:
        out, self._ledger = self._ledger, []
        return out

    async def knows(
        self, client_order_id: str, exchange: str, symbol: str, margin_mode: str | None = None
    ) -> bool | None:
        return await self.lookups.knows(client_order_id, exchange, symbol, margin_mode)

    def track(self, intent: OrderIntent) -> None:
        self.lookups.track(intent)

    async def follow(self, order: StoredOrder) -> None:
        """Follow a resting order of an earlier run from the fills our records hold: read it once now (it may
        have filled while no executor ran), then its reports count like those of our own orders."""
        i, cid = order.intent, order.intent.client_order_id
        if i.exchange not in self.clients:
            log.warning("%s rests on %s, which is not a configured live venue: not followed", cid, i.exchange)
            return
        if cid in self._open or cid in self._seen_filled or cid in self._done_filled or cid in self.lookups.pending:
            return  # this run follows it already (found, resent or looked up at start-up)
        self._seen_filled[cid] = order.filled
        self._open[cid] = Tracked(i.exchange, i.symbol, order.venue_order_id, i.side, i.margin_mode)  # reports count
        params: dict[str, Any] = {"clientOrderId": cid}
        if i.margin_mode:
            params["marginMode"] = i.margin_mode
        try:
            found = await self.client(i.exchange).fetch_order(order.venue_order_id or None, i.symbol, params)
        except Exception as exc:  # it cannot be read now: looked up (reported unknown) until it can
            log.warning("%s: reading %s, left open by an earlier run, failed: %s", i.exchange, cid, exc)
            self._open.pop(cid, None)
            self.lookups.track(i)
            return
        log.info(
            "%s: following %s, left %s by an earlier run: %s, filled %s",
            i.exchange,
            cid,
            order.status,
            found.get("status"),
            found.get("filled"),
        )
        if dec(found.get("filled") or 0) != self._seen_filled.get(cid) or found.get("status") != "open":
            self._record(cid, i.exchange, i.symbol, i.side, found, i.margin_mode)  # older than a report: ignored

    # ---- the account -------------------------------------------------------------------------

    async def open_orders(self) -> list[VenueOrder]:
        out = []
        for venue, client in self.clients.items():
            out += await account.venue_open_orders(venue, self.venues[venue], client)
        return out

    async def balances(self) -> list[VenueBalance]:
        """Every wallet of every live venue; refreshes the positions ``positions()`` returns."""
        out, positions = [], []
        for venue, client in self.clients.items():
            wallets = await account.wallet_balances(venue, self.venues[venue], client)
            out += wallets
            positions += await account.open_positions(venue, self.venues[venue], client)
        self._positions = positions
        return out

    def positions(self) -> list[Position]:
        return list(self._positions)

    async def audit(self) -> dict[str, list[str]]:
        """Compare each idle venue's balances and open orders with what our reports say; return what differs.

        A venue with an order open, in flight or of unknown outcome is skipped this round: its fills may be
        on their way; so is one where anything happened while we read it (``ccxt_audit``). The reference is
        the previous counted read of the venue's balances, moved by our fills, loans and transfers since. The
        first round only takes it: never at start-up, where the orders an earlier run left are still being
        looked up and recorded (the read would already hold their fills, and recording them moves it again).
        """
        out: dict[str, list[str]] = {}
        for venue, client in self.clients.items():
            mark = self._audit.mark(venue)
            if not self._quiet(venue, mark):
                continue
            cfg = self.venues[venue]
            actual = await account.wallet_balances(venue, cfg, client)
            orders = await account.venue_open_orders(venue, cfg, client)
            if not self._quiet(venue, mark):
                continue
            diffs = [f"{venue}: open order {o.client_order_id or '?'} on {o.symbol} we did not place" for o in orders]
            expected = self._audit.expected.get(venue)
            if expected is not None:
                diffs += account.balance_differences(venue, expected, actual, cfg.audit_tolerance)
            self._audit.expected[venue] = account.totals(actual)
            if diffs:
                out[venue] = diffs
        return out

    def _quiet(self, venue: str, mark: int) -> bool:
        """Nothing of ``venue`` open, in flight or looked up, and nothing recorded there since ``mark``."""
        if any(t.venue == venue for t in self._open.values()) or venue in self.lookups.busy_venues():
            return False
        return self._audit.quiet_since(venue, mark)

    async def borrow(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        client = self.client(exchange)
        with self._audit.acting(exchange):
            if wallet.startswith("isolated:"):
                await client.borrow_isolated_margin(wallet.split(":", 1)[1], asset, float(amount))
            else:
                await client.borrow_cross_margin(asset, float(amount))
        now = time.time_ns()  # the loan adds to free and to debt alike: our expected net totals stay put
        self._ledger.append(LedgerEntry(exchange, wallet, asset, amount, "borrow", f"borrow-{now}", now))

    async def repay(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        client = self.client(exchange)
        with self._audit.acting(exchange):
            if wallet.startswith("isolated:"):
                await client.repay_isolated_margin(wallet.split(":", 1)[1], asset, float(amount))
            else:
                await client.repay_cross_margin(asset, float(amount))
        now = time.time_ns()
        self._ledger.append(LedgerEntry(exchange, wallet, asset, -amount, "repay", f"repay-{now}", now))

    async def move(self, exchange: str, asset: str, amount: Decimal, from_wallet: str, to_wallet: str) -> str:
        """Spot → cross margin only (``ccxt_account.transfer_to_margin``); booked in the audit's reference."""
        if (from_wallet, to_wallet) != ("spot", "cross") or exchange not in self.clients:
            raise TransferRefused(f"{exchange}: no {from_wallet} -> {to_wallet} transfer through ccxt")
        try:
            with self._audit.acting(exchange):
                tid = await account.transfer_to_margin(self.client(exchange), asset, amount)
        except ccxt.ExchangeError as exc:  # the venue answered with an error: not moved (a NetworkError: unknown)
            raise TransferRefused(f"{exchange} refused the transfer: {exc}") from None
        now = time.time_ns()
        self._entry(exchange, from_wallet, asset, -amount, "transfer", tid, now)
        self._entry(exchange, to_wallet, asset, amount, "transfer", tid, now)
        return tid

    async def withdraw(self, exchange: str, asset: str, amount: Decimal, address: str, to_venue: str = "") -> str:
        """Withdraw to an allow-listed address only; anything else is refused before ccxt is called."""
        allowed = self.venues[exchange].withdraw_allowlist.get(asset, []) if exchange in self.venues else []
        if address not in allowed:
            raise PermissionError(
                f"withdrawal of {asset} from {exchange} to {address!r} refused: not in "
                f"executor.live_venues.{exchange}.withdraw_allowlist.{asset}"
            )
        with self._audit.acting(exchange):
            result = await self.client(exchange).withdraw(asset, float(amount), address)
        return str(result.get("id"))

    async def close(self) -> None:
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        for client in self.clients.values():
            await client.close()
