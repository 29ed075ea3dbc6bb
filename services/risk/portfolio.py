"""The risk service's view of our holdings: balances, exposure, PnL, margin and drawdown per venue.

Built from the paper start balances (``executor.initial_balances``) and every fill on
``orders:events``; margin orders (known from ``orders:intents``) move a venue's margin account
instead of its spot wallet: a margin sell borrows the base it sells, a reduce-only buy repays.
Assets are valued in USD through the mids of ``ASSET/USD``-like markets on any venue
(stablecoins count 1:1); assets with no mark yet are left out of equity, and say so.

Margin top-ups (spot → margin transfers the executor makes, ``WalletTransfer`` on ``orders:events``)
move a venue's stablecoin collateral into its margin account; one asked for and not yet answered
already counts in the margin level (so the rule does not buy back what it saves), until its outcome
comes or ``PENDING_NS`` passes. One that failed, or went unanswered, stops top-ups on that venue for
``BLOCKED_NS``: its margin level is then restored by buy-backs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.risk.crash import asset_key
from shared.bounded import LruDict, LruSet
from shared.pretrade import split_symbol
from shared.schemas import OrderEvent, OrderIntent, WalletTransfer

NS = 1_000_000_000
PENDING_NS = 30 * NS  # the executor answers a transfer in well under this (ccxt's timeout included)
BLOCKED_NS = 300 * NS
USD_LIKE = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI"})
DAY_NS = 86_400 * 1_000_000_000
SEEN_FILLS_KEPT = 200_000  # fill ids (and margin intents) remembered: far more than orders:events holds unread


@dataclass
class MarginAccount:
    quote: float = 0.0  # quote held in the margin wallet (collateral + short proceeds)
    debt: dict[str, float] = field(default_factory=dict)  # base asset -> borrowed
    asset: str = ""  # the quote ``quote`` is held in, once a margin fill named it


@dataclass
class Portfolio:
    balances: dict[str, dict[str, float]] = field(default_factory=dict)  # venue -> asset -> amount
    margin: dict[str, MarginAccount] = field(default_factory=dict)  # venue -> its cross margin account
    marks: dict[str, float] = field(default_factory=dict)  # asset -> USD
    realized: dict[str, float] = field(default_factory=dict)  # venue -> realized PnL (USD, average cost)
    entry: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (venue, base) -> (qty, avg)
    order_modes: LruDict[str, OrderIntent] = field(
        default_factory=lambda: LruDict(SEEN_FILLS_KEPT)
    )  # id -> margin intent
    resting: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # id -> (venue, symbol, side)
    # fill ids applied, newest kept: orders:events only redelivers recent entries (see restore.py)
    seen_fills: LruSet[str] = field(default_factory=lambda: LruSet(SEEN_FILLS_KEPT))
    derivatives: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (venue, sym) -> qty, entry
    peak_total: float = 0.0
    peak_day: float = 0.0
    day: int = -1
    marks_grace_until_ns: int = 0  # until then, a holding with no mark yet suspends the drawdown measure
    pending_transfers: dict[str, WalletTransfer] = field(default_factory=dict)  # id -> top-up asked, unanswered
    seen_transfers: LruSet[str] = field(default_factory=lambda: LruSet(SEEN_FILLS_KEPT))  # done ones applied
    # venue transfer ids already in the balances this portfolio was restored from (see ``restore``)
    stored_transfers: LruSet[str] = field(default_factory=lambda: LruSet(SEEN_FILLS_KEPT))
    top_up_blocked: dict[str, int] = field(default_factory=dict)  # venue -> ns until which no top-up is asked

    @classmethod
    def from_balances(cls, initial: dict[str, dict[str, float]]) -> Portfolio:
        return cls(balances={v: dict(assets) for v, assets in initial.items()})

    # ---- inputs ---------------------------------------------------------------------------

    def on_mid(self, symbol: str, mid: float) -> None:
        key = asset_key(symbol)
        base, quote = key.split("/")
        if quote == "USD":
            self.marks[base] = mid

    def mark(self, asset: str) -> float | None:
        return 1.0 if asset in USD_LIKE else self.marks.get(asset)

    def on_intent(self, intent: OrderIntent) -> None:
        if intent.margin_mode is not None and not intent.cancel:
            self.order_modes[intent.client_order_id] = intent

    def on_order_event(self, event: OrderEvent) -> None:
        """Apply an order's new fills (idempotent: a fill id is applied once) and track resting orders."""
        if event.status in ("accepted", "partially_filled"):
            self.resting[event.client_order_id] = (event.exchange, event.symbol, event.side)
        else:
            self.resting.pop(event.client_order_id, None)
        base, quote = split_symbol(event.symbol)
        margin_intent = self.order_modes.get(event.client_order_id)
        for fill in event.fills:
            if fill.fill_id in self.seen_fills:
                continue
            self.seen_fills.add(fill.fill_id)
            qty, value = fill.amount, fill.amount * fill.price
            sign = 1.0 if event.side == "buy" else -1.0
            if margin_intent is not None:
                acc = self.margin.setdefault(event.exchange, MarginAccount())
                acc.asset = acc.asset or quote
                acc.quote -= sign * value + (fill.fee if fill.fee_asset == quote else 0.0)
                acc.debt[base] = max(acc.debt.get(base, 0.0) - sign * qty, 0.0)
            else:
                wallet = self.balances.setdefault(event.exchange, {})
                wallet[base] = wallet.get(base, 0.0) + sign * qty
                wallet[quote] = wallet.get(quote, 0.0) - sign * value
                wallet[fill.fee_asset] = wallet.get(fill.fee_asset, 0.0) - fill.fee
            self._realize(event.exchange, base, quote, sign * qty, fill.price)

    def expect_transfer(self, transfer: WalletTransfer) -> None:
        """A top-up asked of the executor: counted in the margin level until its outcome comes."""
        self.pending_transfers[transfer.transfer_id] = transfer

    def on_transfer(self, transfer: WalletTransfer, now: int) -> None:
        """A transfer's outcome: a done one moves the collateral (once); a failed one blocks top-ups a while.
        "unknown" counts as not moved: the margin level errs low, towards buy-backs."""
        if transfer.status == "requested" or transfer.transfer_id in self.seen_transfers:
            return
        if transfer.venue_transfer_id and transfer.venue_transfer_id in self.stored_transfers:
            self.pending_transfers.pop(transfer.transfer_id, None)
            self.seen_transfers.add(transfer.transfer_id)  # delivered again after a restart: already stored
            return
        self.pending_transfers.pop(transfer.transfer_id, None)
        if transfer.status != "done":
            self.top_up_blocked[transfer.exchange] = now + BLOCKED_NS
            return
        self.seen_transfers.add(transfer.transfer_id)
        wallet = self.balances.setdefault(transfer.exchange, {})
        wallet[transfer.asset] = wallet.get(transfer.asset, 0.0) - transfer.amount
        self.margin.setdefault(transfer.exchange, MarginAccount()).quote += transfer.amount

    def settle_transfers(self, now: int) -> None:
        """Forget top-ups the executor never answered (they block the venue's top-ups) and lift blocks that are over."""
        for tid, t in list(self.pending_transfers.items()):
            if now - t.ts > PENDING_NS:
                del self.pending_transfers[tid]
                self.top_up_blocked[t.exchange] = now + BLOCKED_NS
        self.top_up_blocked = {v: until for v, until in self.top_up_blocked.items() if until > now}

    def _pending(self, venue: str, wallet: str, asset: str | None = None) -> float:
        """Collateral on its way into (``wallet`` "margin") or out of ("spot") the venue's wallet."""
        return sum(
            t.amount
            for t in self.pending_transfers.values()
            if t.exchange == venue
            and (t.to_wallet != "spot" if wallet == "margin" else t.from_wallet == wallet)
            and asset in (None, t.asset)
        )

    def _realize(self, venue: str, base: str, quote: str, signed: float, price: float) -> None:
        qty, avg = self.entry.get((venue, base), (0.0, 0.0))
        q_usd = self.mark(quote) or 0.0
        if qty == 0 or (qty > 0) == (signed > 0):
            total = qty + signed
            self.entry[(venue, base)] = (total, (avg * abs(qty) + price * abs(signed)) / abs(total))
            return
        closing = min(abs(signed), abs(qty))
        direction = 1.0 if qty > 0 else -1.0
        self.realized[venue] = self.realized.get(venue, 0.0) + (price - avg) * closing * direction * q_usd
        left = qty + signed
        self.entry[(venue, base)] = (left, avg if (left > 0) == (qty > 0) and left else price)

    # ---- views ----------------------------------------------------------------------------

    def spot(self, venue: str, asset: str) -> float:
        return self.balances.get(venue, {}).get(asset, 0.0)

    def short_debt(self, venue: str, asset: str) -> float:
        acc = self.margin.get(venue)
        return acc.debt.get(asset, 0.0) if acc else 0.0

    def margin_capacity(self, venue: str, asset: str, price: float, level: float) -> float:
        acc = self.margin.get(venue)
        if acc is None or price <= 0:
            return 0.0
        owed = sum(d * (self.mark(a) or price) for a, d in acc.debt.items())
        return max(0.0, (acc.quote - level * owed) / ((level - 1) * price))

    def margin_venues(self) -> list[str]:
        return list(self.margin)

    def resting_bids(self, venue: str) -> list[tuple[str, str]]:
        return [(cid, sym) for cid, (v, sym, side) in self.resting.items() if v == venue and side == "buy"]

    def margin_level(self, venue: str) -> float | None:
        acc = self.margin.get(venue)
        if acc is None:
            return None
        owed = 0.0
        for asset, debt in acc.debt.items():
            mark = self.mark(asset)
            if mark is None:
                return None
            owed += debt * mark
        return (acc.quote + self._pending(venue, "margin")) / owed if owed > 0 else None

    def margin_assets(self, venue: str) -> float:
        acc = self.margin.get(venue)
        return acc.quote + self._pending(venue, "margin") if acc else 0.0

    def margin_debts(self, venue: str) -> dict[str, float]:
        acc = self.margin.get(venue)
        return dict(acc.debt) if acc else {}

    def top_up_funds(self, venue: str) -> tuple[str, float] | None:
        """The stablecoin the margin account is held in (else the one most held in spot) and how much of it the
        spot wallet holds beyond the top-ups already asked for; None while the venue's top-ups are blocked."""
        acc = self.margin.get(venue)
        if acc is None or venue in self.top_up_blocked:
            return None
        spot = self.balances.get(venue, {})
        held = [a for a in spot if a in USD_LIKE]
        asset = acc.asset if acc.asset in USD_LIKE else max(held, key=lambda a: spot[a], default="")
        if not asset:
            return None
        return asset, max(spot.get(asset, 0.0) - self._pending(venue, "spot", asset), 0.0)

    def venue_equity(self, venue: str) -> tuple[float, list[str]]:
        """USD value of the venue's wallets, and the assets left out for want of a mark."""
        value, unpriced = 0.0, []
        for asset, amount in self.balances.get(venue, {}).items():
            mark = self.mark(asset)
            if mark is None:
                if amount:
                    unpriced.append(asset)
                continue
            value += amount * mark
        acc = self.margin.get(venue)
        if acc is not None:
            value += acc.quote
            for asset, debt in acc.debt.items():
                value -= debt * (self.mark(asset) or 0.0)
        for (v, symbol), (qty, entry) in self.derivatives.items():
            mark = self.mark(symbol.partition("/")[0])
            if v == venue and mark is not None:
                value += (mark - entry) * qty
            elif v == venue:
                unpriced.append(symbol)
        return value, unpriced

    def exposure(self, venue: str) -> tuple[float, float]:
        """Gross and net USD value of non-stablecoin positions on the venue (spot + margin shorts)."""
        gross = net = 0.0
        positions = dict(self.balances.get(venue, {}))
        acc = self.margin.get(venue)
        for asset, debt in acc.debt.items() if acc else []:
            positions[asset] = positions.get(asset, 0.0) - debt
        for (v, symbol), (qty, _) in self.derivatives.items():
            if v == venue:
                base = symbol.partition("/")[0]
                positions[base] = positions.get(base, 0.0) + qty
        for asset, amount in positions.items():
            mark = self.mark(asset)
            if asset in USD_LIKE or mark is None:
                continue
            gross += abs(amount * mark)
            net += amount * mark
        return gross, net

    def equity(self) -> float:
        venues = set(self.balances) | set(self.margin) | {v for v, _ in self.derivatives}
        return sum(self.venue_equity(v)[0] for v in venues)

    def drawdowns(self, now_ns: int) -> tuple[float, float, float]:
        """(equity, intraday drawdown, total drawdown) as fractions of the day's and all-time peaks.

        While a holding has no mark yet and the grace (``marks_grace_until_ns``: a restarted service waiting
        for its first books) lasts, the equity is partial: no drawdown is measured and no peak moved, or the
        missing holding would read as a loss. After the grace it is measured without it: a holding that
        never gets a price must not switch the kill switch off (`tradewind risk state` lists it as unpriced)."""
        venues = set(self.balances) | set(self.margin) | {v for v, _ in self.derivatives}
        valued = [self.venue_equity(v) for v in venues]
        eq = sum(value for value, _ in valued)
        if now_ns < self.marks_grace_until_ns and any(unpriced for _, unpriced in valued):
            return eq, 0.0, 0.0
        day = now_ns // DAY_NS
        if day != self.day:
            self.day, self.peak_day = day, eq
        self.peak_day = max(self.peak_day, eq)
        self.peak_total = max(self.peak_total, eq)
        intraday = (self.peak_day - eq) / self.peak_day if self.peak_day > 0 else 0.0
        total = (self.peak_total - eq) / self.peak_total if self.peak_total > 0 else 0.0
        return eq, intraday, total

    def unrealized(self, venue: str) -> float:
        out = 0.0
        for (v, base), (qty, avg) in self.entry.items():
            mark = self.mark(base)
            if v == venue and qty and mark is not None:
                out += (mark - avg) * qty
        return out
