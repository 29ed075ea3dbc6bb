"""What the arbitrage strategy records: opportunities and executions, and their PostgreSQL writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

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


class ArbitrageStore:
    """Writes records to ``arb_opportunities`` / ``arb_executions`` (migration 0040)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, opportunities: Sequence[OpportunityRecord], executions: Sequence[ExecutionRecord]) -> None:
        if opportunities:
            await self.db.pool.executemany(
                "INSERT INTO arb_opportunities (exchange, assets, legs, gross_return, net_return, start_amount,"
                " expected_profit, decision, execution_id, book_ts, detected_at)"
                " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                    )
                    for o in opportunities
                ],
            )
        if executions:
            # an execution is stored once, when it finishes; a replayed save changes nothing
            await self.db.pool.executemany(
                "INSERT INTO arb_executions (execution_id, exchange, assets, mode, status, net_return, start_amount,"
                " expected_profit, realized_profit, latency_us, failure, orders, residuals, started_at, finished_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14, $15)"
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
                    )
                    for e in executions
                ],
            )
