"""What the risk service rebuilds at start, from PostgreSQL: holdings, fills seen, drawdown peaks.

The executor stores every balance (per wallet), position and fill in one transaction per report
batch, so one consistent read of those tables is the portfolio as of the last stored batch; the
fill ids read with it make the fills that ``orders:events`` delivers again count once, and the
transfer ids of its ledger do the same for the margin top-ups' outcomes. In live
mode those balances are the venues' own (the executor stores every wallet it sees at start), and
the service refuses to run without them: a kill switch that starts from an empty portfolio can
never see a drawdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from services.risk.portfolio import SEEN_FILLS_KEPT, USD_LIKE, MarginAccount, Portfolio
from shared.bounded import LruSet
from shared.config import Settings
from shared.schemas import OrderIntent
from shared.storage import Database

log = logging.getLogger(__name__)

OPEN = ("submitted", "accepted", "partially_filled", "unknown")


class NoLiveBalances(RuntimeError):
    """Live mode, and the venues' balances are not stored (yet): the drawdown kill switch would be blind."""


async def load_portfolio(db: Database, settings: Settings, fills_kept: int = SEEN_FILLS_KEPT) -> Portfolio:
    """The portfolio as stored; the paper start balances when nothing is stored yet (paper only)."""
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        balances = await conn.fetch(
            "SELECT exchange, wallet, asset, free + locked AS held, borrowed + interest AS owed FROM balances"
        )
        positions = await conn.fetch("SELECT exchange, symbol, amount, entry_price, realized_pnl FROM positions")
        fills = await conn.fetch(  # the newest fills, oldest first: only recent entries of orders:events come again
            "SELECT fill_id FROM (SELECT fill_id, ts FROM fills ORDER BY ts DESC LIMIT $1) AS recent ORDER BY ts",
            fills_kept,
        )
        margin_orders = await conn.fetch(
            "SELECT client_order_id, exchange, symbol, side, order_type, amount, margin_mode FROM orders"
            " WHERE margin_mode IS NOT NULL AND status = ANY($1::text[])",
            list(OPEN),
        )
        moved = await conn.fetch(  # wallet transfers already in the stored balances (their venue ids)
            "SELECT ref FROM (SELECT ref, max(ts) AS ts FROM ledger WHERE kind = 'transfer' GROUP BY ref"
            " ORDER BY ts DESC LIMIT $1) AS recent ORDER BY ts",
            fills_kept,
        )
        peaks = await conn.fetchrow("SELECT peak_total, peak_day, day FROM risk_state WHERE id = 1")
    if not balances:
        if settings.mode == "live":
            raise NoLiveBalances("no venue balances stored yet")
        portfolio = Portfolio.from_balances(settings.executor.initial_balances)
    else:
        portfolio = Portfolio()
        for b in balances:
            _add_balance(portfolio, b["exchange"], b["wallet"], b["asset"], float(b["held"]), float(b["owed"]))
    for p in positions:
        _add_position(portfolio, p["exchange"], p["symbol"], float(p["amount"]), float(p["entry_price"]))
        portfolio.realized[p["exchange"]] = portfolio.realized.get(p["exchange"], 0.0) + float(p["realized_pnl"])
    portfolio.seen_fills = LruSet(fills_kept, (r["fill_id"] for r in fills))
    portfolio.stored_transfers = LruSet(fills_kept, (r["ref"] for r in moved))
    for o in margin_orders:
        portfolio.on_intent(
            OrderIntent(
                o["client_order_id"],
                o["exchange"],
                o["symbol"],
                o["side"],
                o["order_type"],
                float(o["amount"]),
                0,
                margin_mode=o["margin_mode"],
            )
        )
    if peaks is not None:
        portfolio.peak_total, portfolio.peak_day, portfolio.day = peaks["peak_total"], peaks["peak_day"], peaks["day"]
    return portfolio


def _add_balance(portfolio: Portfolio, venue: str, wallet: str, asset: str, held: float, owed: float) -> None:
    if wallet in ("cross",) or wallet.startswith("isolated"):
        acc = portfolio.margin.setdefault(venue, MarginAccount())
        if owed:
            acc.debt[asset] = acc.debt.get(asset, 0.0) + owed
        if asset in USD_LIKE:
            acc.quote += held
            return
    wallets = portfolio.balances.setdefault(venue, {})
    wallets[asset] = wallets.get(asset, 0.0) + held


def _add_position(portfolio: Portfolio, venue: str, symbol: str, amount: float, entry: float) -> None:
    if not amount:
        return
    if ":" in symbol:  # a derivative (ccxt's BASE/QUOTE:SETTLE): its value is its unrealized PnL
        portfolio.derivatives[(venue, symbol)] = (amount, entry)
        return
    base = symbol.partition("/")[0]
    qty, avg = portfolio.entry.get((venue, base), (0.0, 0.0))
    total = qty + amount
    portfolio.entry[(venue, base)] = (total, (avg * qty + entry * amount) / total if total else 0.0)


async def wait_for_portfolio(db: Database, settings: Settings, wait_s: float) -> Portfolio:
    """``load_portfolio``; in live mode wait up to ``wait_s`` for the executor to store every live venue's
    balances, then refuse (raise ``NoLiveBalances`` naming the venues that are missing)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            portfolio = await load_portfolio(db, settings)
            missing = (
                missing_venues(portfolio, sorted(settings.executor.live_venues)) if settings.mode == "live" else []
            )
            if not missing:
                return portfolio
            problem = f"no stored balances for live venue(s) {', '.join(missing)}"
        except NoLiveBalances as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise NoLiveBalances(
                f"risk refuses to run live: {problem} after {wait_s:.0f}s (the executor stores every wallet of"
                " each live venue when it starts; start it, or check its log)"
            )
        log.info("risk: waiting for the venues' balances (%s)", problem)
        await asyncio.sleep(1.0)


def missing_venues(portfolio: Portfolio, venues: Sequence[str]) -> list[str]:
    return [v for v in venues if v not in portfolio.balances and v not in portfolio.margin]


async def save_peaks(db: Database, portfolio: Portfolio) -> None:
    await db.execute(
        "INSERT INTO risk_state (id, peak_total, peak_day, day) VALUES (1, $1, $2, $3)"
        " ON CONFLICT (id) DO UPDATE SET peak_total = $1, peak_day = $2, day = $3, updated_at = now()",
        portfolio.peak_total,
        portfolio.peak_day,
        portfolio.day,
    )
