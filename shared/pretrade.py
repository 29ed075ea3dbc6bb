"""Pre-trade risk checks: pure, in-process, microseconds — the executor calls them on every order.

The rules belong to the risk area (DESIGN.md puts them in services/risk), but the executor must
run them inline, with no network hop, and services never import each other: so they live here,
in the shared library both import. ``PreTradeGuard.check`` returns ``None`` (pass) or a reason
code such as ``risk.max_notional`` that the executor copies into the rejected ``OrderEvent``.

The guard also keeps the halt state that ``risk:control`` messages drive (kill switch, per-venue
halts, crash buy-blocks) and treats a risk service silent for longer than
``heartbeat_timeout_s`` as a global halt: an executor whose risk service died keeps enforcing the
last limits it knows and stops placing new orders. With ``heartbeat_required=False`` (paper and
replay executors) the heartbeat is enforced only once a first ``risk:control`` message was heard,
so an executor run without a risk service still trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.halts import HaltSet
from shared.schemas import OrderEvent, OrderIntent, RiskControl
from shared.sections.risk import LimitOverride, Limits, RiskSettings

# Reason codes: the strings that reach `orders:events` (OrderEvent.reason).
HALTED = "risk.halted"
VENUE_HALTED = "risk.venue_halted"
HEARTBEAT_LOST = "risk.heartbeat_lost"
CRASH_NO_BUY = "risk.crash_no_buy"
NO_PRICE = "risk.no_price"
MAX_NOTIONAL = "risk.max_notional"
PRICE_BAND = "risk.price_band"
MAX_OPEN_ORDERS = "risk.max_open_orders"
MAX_POSITION = "risk.max_position"
MAX_GROSS = "risk.max_gross_exposure"
MAX_NET = "risk.max_net_exposure"
INSUFFICIENT_BALANCE = "risk.insufficient_balance"
BALANCE_UNKNOWN = "risk.balance_unknown"
RATE_LIMIT = "risk.rate_limit"
MARGIN_LEVEL = "risk.margin_level"
NOT_REDUCING = "risk.not_reducing"  # a reduce-only order that would not reduce a position
UNKNOWN_OUTCOME = "risk.unknown_outcome"  # an order on this market may or may not be live

LIMIT_FIELDS = tuple(Limits.model_fields)
_LOWER_IS_LOOSER = frozenset({"fee_buffer"})  # every other limit loosens when raised
_BLOCK_BUYS = "block_buys"  # RiskControl.limits key: 1 blocks new buys on that venue, 0 lifts it


def split_symbol(symbol: str) -> tuple[str, str]:
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE")
    return base, quote


@dataclass(frozen=True, slots=True)
class ResolvedLimits:
    """Limits of one venue/symbol as plain floats (``inf`` = no limit), for the hot path."""

    max_order_notional: float
    max_position_notional: float
    max_gross_exposure: float
    max_net_exposure: float
    max_open_orders: float
    orders_per_s: float
    order_burst: int
    price_band: float  # fraction of mid
    fee_buffer: float


def _inf(x: float | None) -> float:
    return float("inf") if x is None else float(x)


def resolve_limits(risk: RiskSettings, venue: str, symbol: str) -> Limits:
    """The limits that apply to ``symbol`` on ``venue``, most specific override last."""
    merged = risk.limits.model_dump()
    layers: list[LimitOverride | None] = [
        risk.venues.get(venue),
        risk.symbols.get(symbol),
        risk.symbols.get(f"{venue}:{symbol}"),
    ]
    for layer in layers:
        if layer is not None:
            merged.update(layer.model_dump(exclude_unset=True))
    return Limits.model_validate(merged)


def limit_env_name(venue: str, limit: str) -> str:
    """The environment variable that sets ``limit`` for ``venue`` (what a refusal tells the user to set)."""
    return f"TRADEWIND_RISK__VENUES__{venue}__{limit}"


def missing_limits(risk: RiskSettings, venues: list[str]) -> list[str]:
    """Why the limits are not "configured" for live trading on ``venues`` (empty: they are).

    Configured means every limit field set explicitly for that venue (``risk.venues[venue]``,
    i.e. ``TRADEWIND_RISK__VENUES__<venue>__<field>``) to a bounded value: neither the paper
    defaults of ``risk.limits`` nor an explicit ``None`` (unlimited) count, and no per-symbol
    override may lift a limit of a live venue to unlimited.
    """
    problems = []
    for venue in venues:
        override = risk.venues.get(venue)
        given = override.model_fields_set if override is not None else set()
        unset = [k for k in LIMIT_FIELDS if k not in given]
        if unset:
            problems.append(
                f"{venue}: limits not set for this venue: {', '.join(unset)} "
                f"(set {', '.join(limit_env_name(venue, k) for k in unset)})"
            )
        unlimited = [k for k in LIMIT_FIELDS if k in given and getattr(override, k) is None]
        if unlimited:
            problems.append(
                f"{venue}: unlimited {', '.join(unlimited)} "
                f"(set {', '.join(limit_env_name(venue, k) for k in unlimited)} to a number)"
            )
        for key, sym in sorted(risk.symbols.items()):
            scoped, sep, _ = key.rpartition(":")
            if sep and scoped != venue:
                continue
            lifted = [k for k in sorted(sym.model_fields_set) if getattr(sym, k) is None]
            if lifted:
                problems.append(
                    f"{venue}: symbol override {key!r} makes {', '.join(lifted)} unlimited "
                    f"(TRADEWIND_RISK__SYMBOLS__{key}__{lifted[0]})"
                )
    return problems


def _reduces(position: float, buy: bool, amount: float) -> bool:
    """Whether trading ``amount`` reduces ``position`` (signed; a margin short is negative, so buying
    back its debt reduces it) without crossing to the other side."""
    if position == 0.0 or buy != (position < 0.0):
        return False
    return amount <= abs(position) * (1 + 1e-9) + 1e-12  # float rounding of fills summed


@dataclass(slots=True)
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    at_ns: int = 0

    def take(self, now_ns: int) -> bool:
        if self.rate == float("inf"):
            return True
        elapsed = (now_ns - self.at_ns) / 1e9
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.at_ns = now_ns
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class VenueAccount:
    """What the guard knows about our account on one venue: positions, marks, free balances, open
    orders (no price levels: the order books are ingest's ``OrderBook`` and the paper ``SimBook``)."""

    positions: dict[str, float] = field(default_factory=dict)  # base asset -> signed amount
    marks: dict[str, float] = field(default_factory=dict)  # base asset -> price in quote
    free: dict[str, float] = field(default_factory=dict)  # asset -> free amount
    open_orders: dict[str, tuple[str, str]] = field(default_factory=dict)  # resting: client order id -> symbol, side
    margin_level: float | None = None  # of the venue's margin account, when it has debt
    buys_blocked: str = ""
    margin: dict[str, float] = field(default_factory=dict)  # base asset -> signed margin position (< 0: short)
    margin_peak: dict[str, float] = field(default_factory=dict)  # base asset -> largest |margin position| seen


class PreTradeGuard:
    """Every pre-trade rule plus the halt state; one instance per executor process."""

    def __init__(self, risk: RiskSettings, *, now_ns: int = 0, heartbeat_required: bool = True) -> None:
        self.risk = risk
        self.halts = HaltSet()  # durable: the executor loads the stored set before its first order (shared.halts)
        self.venues: dict[str, VenueAccount] = {}
        self.mids: dict[tuple[str, str], float] = {}
        self._limits: dict[tuple[str, str], ResolvedLimits] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.overrides: dict[str | None, dict[str, float]] = {}  # from risk:control set_limit; None: every venue
        self.heartbeat_timeout_ns = int(risk.heartbeat_timeout_s * 1e9)
        # None: not armed yet (no risk service heard, none required); else the grace period starts now
        self.last_heartbeat_ns: int | None = now_ns if heartbeat_required else None
        # (venue, symbol) -> client ids whose outcome is unknown: that market takes no new order until known
        self.unknown: dict[tuple[str, str], set[str]] = {}
        self._margin_orders: set[str] = set()  # margin orders passed and not yet finished: their fills move `margin`

    # ---- inputs ---------------------------------------------------------------------------

    @property
    def halted(self) -> str:
        """Why every venue is halted; "" when it is not."""
        return self.halts.reason(None)

    def venue_halted(self, name: str) -> str:
        """Why this venue is halted by a halt of its own; "" when it is not."""
        return self.halts.reason(name)

    def venue(self, name: str) -> VenueAccount:
        book = self.venues.get(name)
        if book is None:
            book = self.venues[name] = VenueAccount()
        return book

    def set_mid(self, venue: str, symbol: str, mid: float) -> None:
        self.mids[(venue, symbol)] = mid
        self.venue(venue).marks[symbol.partition("/")[0]] = mid

    def set_free(self, venue: str, asset: str, amount: float) -> None:
        self.venue(venue).free[asset] = amount

    def set_position(self, venue: str, asset: str, amount: float) -> None:
        self.venue(venue).positions[asset] = amount

    def set_margin_position(self, venue: str, asset: str, amount: float) -> None:
        """The venue's margin position in ``asset`` (signed; a borrowed-and-sold short is negative)."""
        book = self.venue(venue)
        book.margin[asset] = amount
        book.margin_peak[asset] = max(book.margin_peak.get(asset, 0.0), abs(amount))

    def set_margin_level(self, venue: str, level: float | None) -> None:
        self.venue(venue).margin_level = level

    def on_order_event(self, event: OrderEvent) -> None:
        """Track resting orders, orders of unknown outcome and, from fills, positions (spot and margin net)."""
        market = (event.exchange, event.symbol)
        if event.status == "unknown":
            self.unknown.setdefault(market, set()).add(event.client_order_id)
        elif market in self.unknown:
            self.unknown[market].discard(event.client_order_id)
            if not self.unknown[market]:
                del self.unknown[market]
        book = self.venue(event.exchange)
        if event.status in ("accepted", "partially_filled"):
            book.open_orders[event.client_order_id] = (event.symbol, event.side)
        else:
            book.open_orders.pop(event.client_order_id, None)
        if event.fills:
            base, quote = split_symbol(event.symbol)
            sign = 1.0 if event.side == "buy" else -1.0
            qty = sum(f.amount for f in event.fills)
            value = sum(f.amount * f.price for f in event.fills)
            book.positions[base] = book.positions.get(base, 0.0) + sign * qty
            if event.client_order_id in self._margin_orders:  # a fee paid in base does not repay debt
                fee = sum(f.fee for f in event.fills if f.fee_asset == base)
                book.margin[base] = held = book.margin.get(base, 0.0) + sign * qty - fee
                book.margin_peak[base] = max(book.margin_peak.get(base, 0.0), abs(held))
            if base in book.free:
                book.free[base] += sign * qty
            if quote in book.free:
                book.free[quote] -= sign * value
        if event.status in ("filled", "cancelled", "rejected"):
            self._margin_orders.discard(event.client_order_id)

    def on_control(self, control: RiskControl, now_ns: int) -> list[OrderIntent]:
        """Apply a ``risk:control`` message; return the cancels a halt calls for (our resting orders there).

        Only heartbeats prove the risk service alive: a human's `tradewind halt` says nothing about it.
        """
        if control.action == "heartbeat":
            last = self.last_heartbeat_ns
            self.last_heartbeat_ns = now_ns if last is None else max(last, now_ns)
        reason = control.reason or control.action
        if control.action in ("halt", "resume"):
            change = self.halts.apply(control)
            return self.cancels(control.exchange, now_ns) if change.added else []  # a repeated halt cancels nothing
        if control.action == "set_limit":
            if self.refusal(control):  # the consumer's gate dead-letters these; never applied either way
                return []
            if control.exchange is not None and _BLOCK_BUYS in control.limits:
                self.venue(control.exchange).buys_blocked = reason if control.limits[_BLOCK_BUYS] else ""
            changed = {k: v for k, v in control.limits.items() if k in LIMIT_FIELDS}
            if changed:  # kept until changed again: enforced even after the risk service goes silent
                self.overrides.setdefault(control.exchange, {}).update(changed)
                self._limits.clear()
        return []

    def refusal(self, control: RiskControl) -> str | None:
        """Why a ``set_limit`` not signed by the operator may not be applied: it would loosen a limit
        (raise it; lower a fee buffer) of some venue or symbol it reaches. Risk may only tighten."""
        if control.action != "set_limit" or control.signer == "operator":
            return None
        for name, value in control.limits.items():
            if name not in LIMIT_FIELDS:
                continue
            now = self._tightest(name, control.exchange)
            looser = value < now if name in _LOWER_IS_LOOSER else value > now
            if looser:
                who = f"{control.signer}-signed" if control.signer else "unsigned"
                return f"{who} set_limit would loosen {name} ({now:g} → {value:g}); only the operator key may"
        return None

    def _tightest(self, name: str, exchange: str | None) -> float:
        """The tightest value of limit ``name`` now in force on any venue/symbol that ``exchange`` reaches."""
        named = {*self.risk.venues, *self.venues, *(v for v in self.overrides if v is not None)}
        venues = [exchange] if exchange is not None else sorted(named | {""})  # "": any venue not named
        values = []
        for venue in venues:
            symbols = {""} | {k.partition(":")[2] if ":" in k else k for k in self.risk.symbols
                              if ":" not in k or k.startswith(f"{venue}:")}  # fmt: skip
            own = self.overrides.get(venue, {}) if venue else {}
            if exchange is None and name in own:
                continue  # a venue's own runtime value beats one for every venue: not reached
            runtime = {**self.overrides.get(None, {}), **own}
            for symbol in symbols:
                lim = resolve_limits(self.risk, venue, symbol)
                got = runtime.get(name, getattr(lim, name))
                values.append(_inf(got))
        pick = max if name in _LOWER_IS_LOOSER else min
        return pick(values)

    def cancels(self, exchange: str | None, now_ns: int) -> list[OrderIntent]:
        """Cancel intents for every order resting on ``exchange`` (``None``: on every venue)."""
        return [
            OrderIntent(cid, venue, symbol, side, "limit", 0.0, now_ns, strategy="risk-halt", cancel=True)  # type: ignore[arg-type]
            for venue, book in self.venues.items()
            if exchange is None or venue == exchange
            for cid, (symbol, side) in book.open_orders.items()
        ]

    def heartbeat_lost(self, now_ns: int) -> bool:
        last = self.last_heartbeat_ns
        return last is not None and now_ns - last > self.heartbeat_timeout_ns

    # ---- the check --------------------------------------------------------------------------

    def limits(self, venue: str, symbol: str) -> ResolvedLimits:
        key = (venue, symbol)
        got = self._limits.get(key)
        if got is None:
            lim = resolve_limits(self.risk, venue, symbol)
            runtime = {**self.overrides.get(None, {}), **self.overrides.get(venue, {})}
            if runtime:
                lim = lim.model_copy(update=runtime)
            got = self._limits[key] = ResolvedLimits(
                _inf(lim.max_order_notional),
                _inf(lim.max_position_notional),
                _inf(lim.max_gross_exposure),
                _inf(lim.max_net_exposure),
                _inf(lim.max_open_orders),
                _inf(lim.orders_per_s),
                lim.order_burst,
                _inf(lim.price_band_bps) / 10_000,
                lim.fee_buffer,
            )
        return got

    def _reduces_margin(self, book: VenueAccount, asset: str, intent: OrderIntent) -> bool:
        """A margin order that reduces the venue's margin position; a buy-back repays debt, which also
        carries interest (and fees paid in base) the guard does not see: up to the fee buffer of the
        short's largest size may come on top."""
        held = book.margin.get(asset, 0.0)
        over = self.limits(intent.exchange, intent.symbol).fee_buffer * book.margin_peak.get(asset, 0.0)
        return _reduces(held, intent.side == "buy", max(intent.amount - over, 0.0))

    def check(self, intent: OrderIntent, now_ns: int) -> str | None:
        """``None`` when the order may go out, else the reason code of the first rule it breaks.

        Cancels always pass; a reduce-only order must reduce the venue's position in its base asset
        (opposite side, at most its size: else ``risk.not_reducing``) and then passes the halts (it
        only reduces risk) but not the other limits. Passing consumes one token of the venue's order-rate bucket.
        """
        if intent.cancel:
            return None
        if (intent.exchange, intent.symbol) in self.unknown:  # a second order could double the first
            return UNKNOWN_OUTCOME
        book = self.venue(intent.exchange)
        buy = intent.side == "buy"
        if intent.reduce_only:  # it skips the halts and balance checks: only a real reduction may
            asset = split_symbol(intent.symbol)[0]
            margin = intent.margin_mode is not None and self._reduces_margin(book, asset, intent)
            if not margin and not _reduces(book.positions.get(asset, 0.0), buy, intent.amount):
                return NOT_REDUCING  # a margin buy-back may reduce a short that spot inventory nets out
        if not intent.reduce_only:  # reducing risk stays allowed while halted (margin safety needs it)
            if self.halted:
                return HALTED
            if self.heartbeat_lost(now_ns):
                return HEARTBEAT_LOST
            if self.venue_halted(intent.exchange):
                return VENUE_HALTED
            if buy and book.buys_blocked:
                return CRASH_NO_BUY
        lim = self.limits(intent.exchange, intent.symbol)
        mid = self.mids.get((intent.exchange, intent.symbol))
        price = intent.price if intent.price is not None else mid
        if price is None or price <= 0:
            return NO_PRICE
        notional = price * intent.amount
        if notional > lim.max_order_notional:
            return MAX_NOTIONAL
        if intent.price is not None and mid is not None and abs(intent.price - mid) > lim.price_band * mid:
            return PRICE_BAND
        if intent.order_type not in ("market", "ioc") and len(book.open_orders) >= lim.max_open_orders:
            return MAX_OPEN_ORDERS
        base, quote = split_symbol(intent.symbol)
        mark = mid if mid is not None else price
        signed = intent.amount if buy else -intent.amount
        old = book.positions.get(base, 0.0)
        new = old + signed
        if abs(new) * mark > lim.max_position_notional and abs(new) > abs(old):
            return MAX_POSITION
        gross = net = 0.0
        for asset, amount in book.positions.items():
            if asset != base:
                value = amount * book.marks.get(asset, 0.0)
                gross += abs(value)
                net += value
        if gross + abs(new) * mark > lim.max_gross_exposure and abs(new) > abs(old):
            return MAX_GROSS
        if abs(net + new * mark) > lim.max_net_exposure and abs(net + new * mark) > abs(net + old * mark):
            return MAX_NET
        if intent.margin_mode is not None and not intent.reduce_only:
            level = book.margin_level
            if level is not None and level < self.risk.margin_floor:
                return MARGIN_LEVEL
        elif not intent.reduce_only:
            need_asset, need = (quote, notional * (1 + lim.fee_buffer)) if buy else (base, intent.amount)
            free = book.free.get(need_asset)
            if free is None:
                return BALANCE_UNKNOWN
            if free < need:
                return INSUFFICIENT_BALANCE
        bucket = self._buckets.get(intent.exchange)
        if bucket is None:
            bucket = self._buckets[intent.exchange] = TokenBucket(
                lim.orders_per_s, lim.order_burst, float(lim.order_burst), now_ns
            )
        if not bucket.take(now_ns):
            return RATE_LIMIT
        if intent.margin_mode is not None:
            self._margin_orders.add(intent.client_order_id)
        return None
