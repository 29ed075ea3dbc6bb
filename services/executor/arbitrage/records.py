"""What the arbitrage strategy records: opportunities and executions, and their PostgreSQL writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shared.schemas import ArbEvent
from shared.storage import Database, ns_to_datetime


@dataclass(frozen=True, slots=True)
class OpportunityRecord:
    exchange: str
    assets: tuple[str, ...]
    legs: tuple[dict[str, object], ...]
    gross_return: float
    net_return: float
    start_amount: float
    expected_profit: float
    decision: str  # "fired" or the guard's refusal
    execution_id: str | None
    book_ns: int
    detected_ns: int
    strategy: str = "arb"

    def event(self) -> ArbEvent:
        """This record as it goes on ``arb:events``."""
        return ArbEvent("opportunity", self.strategy, self.detected_ns, self.exchange, list(self.assets),
                        self.decision, self.execution_id or "", self.expected_profit, 0.0, self.assets[0],
                        detail={"net_return": self.net_return, "start_amount": self.start_amount})  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    execution_id: str
    exchange: str
    assets: tuple[str, ...]
    mode: str
    status: str
    net_return: float
    start_amount: float
    expected_profit: float
    realized_profit: float
    latency_us: float
    failure: str
    orders: tuple[dict[str, object], ...]
    residuals: dict[str, float]
    started_ns: int
    finished_ns: int
    strategy: str = "arb"
    pnl: float | None = None  # the strategy's running PnL after this execution (xarb)

    def event(self) -> ArbEvent:
        """This record as it goes on ``arb:events``."""
        detail: dict[str, float | str] = {"mode": self.mode, "latency_us": self.latency_us, "failure": self.failure}
        return ArbEvent("execution", self.strategy, self.finished_ns, self.exchange, list(self.assets), self.status,
                        self.execution_id, self.expected_profit, self.realized_profit, self.assets[0], self.pnl,
                        detail)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """An inventory transfer between venues, and its cost in the strategy's profit asset."""

    transfer_id: str
    strategy: str
    from_venue: str
    to_venue: str
    asset: str
    amount: float
    fee: float
    cost: float
    cost_asset: str
    settle_s: float
    created_ns: int
    pnl: float | None = None

    def event(self) -> ArbEvent:
        detail: dict[str, float | str] = {"transfer_id": self.transfer_id, "asset": self.asset}
        detail.update(amount=self.amount, fee=self.fee, settle_s=self.settle_s)
        return ArbEvent("transfer", self.strategy, self.created_ns, f"{self.from_venue}>{self.to_venue}",
                        [self.asset], "sent", "", 0.0, -self.cost, self.cost_asset, self.pnl, detail)  # fmt: skip


class ArbitrageStore:
    """Writes records to ``arb_opportunities`` / ``arb_executions`` (migration 0040)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, opportunities: Sequence[OpportunityRecord], executions: Sequence[ExecutionRecord]) -> None:
        if opportunities:
            await self.db.pool.executemany(
                "INSERT INTO arb_opportunities (exchange, assets, legs, gross_return, net_return, start_amount,"
                " expected_profit, decision, execution_id, book_ts, detected_at, strategy)"
                " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                [
                    (
                        o.exchange,
                        list(o.assets),
                        json.dumps(list(o.legs)),
                        o.gross_return,
                        o.net_return,
                        o.start_amount,
                        o.expected_profit,
                        o.decision,
                        o.execution_id,
                        ns_to_datetime(o.book_ns),
                        ns_to_datetime(o.detected_ns),
                        o.strategy,
                    )
                    for o in opportunities
                ],
            )
        if executions:
            # an execution is stored once, when it finishes; a replayed save changes nothing
            await self.db.pool.executemany(
                "INSERT INTO arb_executions (execution_id, exchange, assets, mode, status, net_return, start_amount,"
                " expected_profit, realized_profit, latency_us, failure, orders, residuals, started_at, finished_at,"
                " strategy)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14, $15, $16)"
                " ON CONFLICT (execution_id) DO NOTHING",
                [
                    (
                        e.execution_id,
                        e.exchange,
                        list(e.assets),
                        e.mode,
                        e.status,
                        e.net_return,
                        e.start_amount,
                        e.expected_profit,
                        e.realized_profit,
                        e.latency_us,
                        e.failure,
                        json.dumps(list(e.orders)),
                        json.dumps(e.residuals),
                        ns_to_datetime(e.started_ns),
                        ns_to_datetime(e.finished_ns),
                        e.strategy,
                    )
                    for e in executions
                ],
            )

    async def save_transfer(self, t: TransferRecord) -> None:
        await self.db.execute(
            "INSERT INTO arb_transfers (transfer_id, strategy, from_venue, to_venue, asset, amount, fee, cost,"
            " cost_asset, settle_s, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (transfer_id) DO NOTHING",
            t.transfer_id, t.strategy, t.from_venue, t.to_venue, t.asset, t.amount, t.fee, t.cost, t.cost_asset,
            t.settle_s, ns_to_datetime(t.created_ns),
        )  # fmt: skip

    async def save_inflight(self, execution_id: str, strategy: str, state: dict[str, object] | None) -> None:
        """Keep an execution in flight across restarts (``state``), or forget it once finished (None)."""
        if state is None:
            await self.db.execute("DELETE FROM arb_inflight WHERE execution_id = $1", execution_id)
            return
        await self.db.execute(
            "INSERT INTO arb_inflight (execution_id, strategy, state) VALUES ($1, $2, $3::jsonb)"
            " ON CONFLICT (execution_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
            execution_id, strategy, json.dumps(state),
        )  # fmt: skip

    async def inflight(self, strategy: str) -> list[dict[str, object]]:
        rows = await self.db.fetch("SELECT state FROM arb_inflight WHERE strategy = $1", strategy)
        return [json.loads(r["state"]) for r in rows]

    async def leg_outcome(self, client_order_id: str) -> tuple[str, float, float, float] | None:
        """What the executor stored of an order (its reports from the gateway): (status, filled, cost, fee in
        quote), or None when no order with this id was ever stored."""
        rows = await self.db.fetch("SELECT status FROM orders WHERE client_order_id = $1", client_order_id)
        if not rows:
            return None
        fills = await self.db.fetch(
            "SELECT coalesce(sum(amount), 0) AS filled, coalesce(sum(amount * price), 0) AS cost,"
            " coalesce(sum(CASE WHEN fee_asset = split_part(symbol, '/', 2) THEN fee ELSE fee * price END), 0) AS fee"
            " FROM fills WHERE client_order_id = $1",
            client_order_id,
        )
        f = fills[0]
        return rows[0]["status"], float(f["filled"]), float(f["cost"]), float(f["fee"])
