"""Margin safety: top up a margin account whose level falls under the floor, else buy back its shorts.

One rule for the risk service (its portfolio, on each heartbeat) and for `tradewind risk simulate`
(the paper exchange's wallets, on the same heartbeat in simulated time), so the simulation tests
the rule production runs. Below ``margin_floor`` (above the venue's margin-call level) a venue gets
a ``margin_low`` event. First, collateral free in the venue's spot wallet is moved into the margin
wallet (an internal transfer: instant, no fee, and the hedge stays on), as much as brings the
level back to ``margin_target``; only what that cannot cover is bought back: for each borrowed
asset with a quoted market on that venue, a reduce-only IOC buy ``band`` through the ask, sized by
:func:`margin_reduce_amount`. The event says both. The venue then rests for ``COOLDOWN_NS`` so
the buy can land before the level is judged again. Pure: state in, intents and transfers out.
"""

from __future__ import annotations

from typing import Protocol

from services.risk.crash import CrashDetector, Market
from services.risk.hedge import Actions, TopUp
from shared.ids import client_order_id
from shared.schemas import OrderIntent, RiskEvent
from shared.sections.risk import RiskSettings

COOLDOWN_NS = 5 * 1_000_000_000
ID_PREFIX = "rm"  # client ids "rm-<venue tag>-<ts>": short enough for every venue (shared.ids)
STRATEGY = "risk-margin"


class MarginView(Protocol):
    """What the rule needs to know of our margin accounts (the risk service's portfolio, or the simulation's)."""

    def margin_venues(self) -> list[str]: ...

    def margin_level(self, venue: str) -> float | None: ...

    def margin_assets(self, venue: str) -> float:
        """Value of what the venue's margin wallet holds, in its quote (the collateral and short proceeds)."""
        ...

    def margin_debts(self, venue: str) -> dict[str, float]:
        """Borrowed amount (interest included) per base asset."""
        ...

    def top_up_funds(self, venue: str) -> tuple[str, float] | None:
        """The collateral asset the venue's spot wallet can move into its margin wallet, and how much
        of it is free; None where no transfer can be made (then only buy-backs restore the level)."""
        ...


def margin_reduce_amount(assets_value: float, debt: float, price: float, target_level: float) -> float:
    """Base to buy back (paying quote) so a short's margin level rises to ``target_level``.

    Level = assets / (debt x price); buying x at ``price`` takes x·price from assets and x from
    debt, so x = (L·debt·price - assets) / ((L - 1)·price).
    """
    if debt <= 0 or price <= 0:
        return 0.0
    x = (target_level * debt * price - assets_value) / ((target_level - 1) * price)
    return min(max(x, 0.0), debt)


class MarginSafety:
    def __init__(self, settings: RiskSettings, detector: CrashDetector, view: MarginView) -> None:
        self.s = settings
        self.detector = detector
        self.view = view
        self.cooldown: dict[str, int] = {}  # venue -> ns before which it is not judged again
        self.reductions = 0  # buy-backs ordered so far

    def check(self, now: int) -> Actions:
        """Judge every margin venue; ask for the top-ups and buy-backs of those under the floor."""
        out = Actions()
        for venue in self.view.margin_venues():
            out.extend(self.check_venue(venue, now))
        return out

    def check_venue(self, venue: str, now: int) -> Actions:
        level = self.view.margin_level(venue)
        if level is None or level >= self.s.margin_floor or now < self.cooldown.get(venue, 0):
            return Actions()
        self.cooldown[venue] = now + COOLDOWN_NS
        detail: dict[str, float | int | str | bool | None] = {"level": level}
        out = Actions(events=[RiskEvent("margin_low", now, "critical", venue, None, detail)])
        assets = self.view.margin_assets(venue)
        funds = self.view.top_up_funds(venue)
        if funds is not None and funds[1] > 0:
            # assets / liabilities = level now; the target needs target x liabilities of assets
            need = assets * (self.s.margin_target / level - 1.0)
            moved = min(need, funds[1])
            out.top_ups.append(TopUp(venue, funds[0], moved, now))
            detail.update(top_up=moved, top_up_asset=funds[0], level_after_top_up=level * (assets + moved) / assets)
            assets += moved
            if moved >= need * (1 - 1e-9):
                detail["reduced"] = 0.0
                return out
        reduced = 0.0
        for asset, debt in self.view.margin_debts(venue).items():
            market = self._market(venue, asset)
            if market is None or not market.ask or debt <= 0:
                continue
            qty = margin_reduce_amount(assets, debt, market.ask, self.s.margin_target)
            if qty <= 0:
                continue
            self.reductions += 1
            reduced += qty * market.ask
            out.intents.append(
                OrderIntent(
                    # a second asset's buy-back in the same nanosecond needs an id of its own
                    client_order_id(ID_PREFIX, now, key=f"{venue}:{asset}" if out.intents else venue),
                    venue,
                    market.symbol,
                    "buy",
                    "ioc",
                    qty,
                    now,
                    price=market.ask * (1 + self.s.hedge.band),
                    strategy=STRATEGY,
                    margin_mode="cross",
                    reduce_only=True,
                )
            )
        detail["reduced"] = reduced  # quote value of the buy-backs ordered
        return out

    def _market(self, venue: str, asset: str) -> Market | None:
        """The first market of ``asset`` the detector has seen on ``venue``."""
        prefix = asset + "/"
        return next((m for (v, _), m in self.detector.markets.items() if v == venue and m.key.startswith(prefix)), None)
