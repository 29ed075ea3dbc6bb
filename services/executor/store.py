"""The executor's records in PostgreSQL: orders, fills, ledger, balances, positions, event outbox.

Idempotency: the executor claims a client order id in Redis (SET NX, next to the stream it came
from) before sending the order, then stores the order row here; a second delivery finds the
claim and the row and places nothing. Each batch of gateway reports is
stored in one transaction together with the ledger entries and balances it produced, and the
events go to an outbox that is published to Redis exactly once (see ``publish_outbox``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal

import asyncpg
import msgspec
from redis.asyncio import Redis

from services.executor.gateway import OPEN_STATUSES, StoredOrder, VenueBalance
from shared.config import BusSettings
from shared.paper import LedgerEntry
from shared.paper.positions import Position
from shared.schemas import OrderEvent, OrderIntent, decode, encode, streams
from shared.storage import Database, ns_to_datetime

log = logging.getLogger(__name__)

__all__ = ["OPEN_STATUSES", "UNSENT_STATUSES", "ExecutorStore", "StoredOrder"]

UNSENT_STATUSES = ("submitted",)  # handed to the venue, no report stored yet: it may never have arrived
# + outbox id; set in the same MULTI as the XADD, so in orders:events' hash slot (one node of a cluster)
PUBLISHED_MARKER = "tw:executor:published:{orders:events}:"


def d(x: float) -> Decimal:
    return Decimal(repr(x))


class ExecutorStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._publishing = asyncio.Lock()  # two concurrent publishers would both read the same unpublished rows

    async def save_orders(self, intents: Sequence[OrderIntent]) -> None:
        """Store the order row of each intent handed to the venue (its status may already be known)."""
        if not intents:
            return
        await self.db.execute(
            """
            INSERT INTO orders (client_order_id, exchange, symbol, side, order_type, amount, price, margin_mode,
                                strategy, intent, status)
            SELECT *, 'submitted' FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::numeric[], $7::numeric[], $8::text[], $9::text[], $10::bytea[])
            ON CONFLICT (client_order_id) DO UPDATE SET order_type = EXCLUDED.order_type, amount = EXCLUDED.amount,
                price = EXCLUDED.price, margin_mode = EXCLUDED.margin_mode, strategy = EXCLUDED.strategy,
                intent = EXCLUDED.intent
            """,
            [i.client_order_id for i in intents],
            [i.exchange for i in intents],
            [i.symbol for i in intents],
            [i.side for i in intents],
            [i.order_type for i in intents],
            [d(i.amount) for i in intents],
            [d(i.price) if i.price is not None else None for i in intents],
            [i.margin_mode for i in intents],
            [i.strategy for i in intents],
            [encode(i) for i in intents],
        )

    async def rows_of(self, client_order_ids: Sequence[str]) -> dict[str, tuple[bool, str, str, Decimal, Decimal]]:
        """The order rows of these client ids: (holds the intent, status, venue order id, filled, average price).

        A row that holds no intent was made by a venue report before ``save_orders`` ran."""
        rows = await self.db.fetch(
            "SELECT client_order_id, intent IS NOT NULL AS has_intent, status, venue_order_id, filled, avg_price"
            " FROM orders WHERE client_order_id = ANY($1::text[])",
            list(client_order_ids),
        )
        return {
            r["client_order_id"]: (r["has_intent"], r["status"], r["venue_order_id"] or "", r["filled"], r["avg_price"])
            for r in rows
        }

    async def next_delivery(self) -> int | None:
        """When the earliest stored but unpublished event is due."""
        rows = await self.db.fetch("SELECT min(deliver_at) AS t FROM order_events WHERE NOT published")
        return rows[0]["t"] if rows else None

    async def orders_in(self, statuses: Sequence[str]) -> list[StoredOrder]:
        rows = await self.db.fetch(
            "SELECT intent, status, venue_order_id, filled, avg_price FROM orders"
            " WHERE status = ANY($1::text[]) AND intent IS NOT NULL ORDER BY created_at",
            list(statuses),
        )
        out = []
        for r in rows:
            intent = decode(r["intent"])[0]
            assert isinstance(intent, OrderIntent)
            out.append(StoredOrder(intent, r["status"], r["venue_order_id"] or "", r["filled"], r["avg_price"]))
        return out

    async def balances(self) -> list[VenueBalance]:
        rows = await self.db.fetch("SELECT exchange, wallet, asset, free, locked, borrowed, interest FROM balances")
        return [
            VenueBalance(r["exchange"], r["wallet"], r["asset"], r["free"], r["locked"], r["borrowed"], r["interest"])
            for r in rows
        ]

    async def positions(self) -> list[Position]:
        """Every stored position (its margin loan and interest live in the balances)."""
        rows = await self.db.fetch(
            "SELECT exchange, symbol, margin_mode, amount, entry_price, realized_pnl FROM positions"
        )
        return [
            Position(r["exchange"], r["symbol"], r["margin_mode"], r["amount"], r["entry_price"], r["realized_pnl"])
            for r in rows
        ]

    async def held_by_strategy(self, strategy: str) -> dict[tuple[str, str], float]:
        """Net base amount the strategy's filled orders hold per market (what it holds after a restart):
        fills, less the fees the venue took in the base asset."""
        rows = await self.db.fetch(
            "SELECT o.exchange, o.symbol,"
            " sum(CASE WHEN o.side = 'buy' THEN o.filled ELSE -o.filled END) - coalesce(sum(f.fee), 0) AS net"
            " FROM orders o LEFT JOIN LATERAL (SELECT sum(fee) AS fee FROM fills WHERE fills.client_order_id ="
            " o.client_order_id AND fills.fee_asset = split_part(o.symbol, '/', 1)) f ON true"
            " WHERE o.strategy = $1 GROUP BY o.exchange, o.symbol",
            strategy,
        )
        return {(r["exchange"], r["symbol"]): float(r["net"]) for r in rows if r["net"]}

    async def base_fee_fills(self, client_order_ids: Sequence[str]) -> dict[str, set[str]]:
        """Per order, the stored fills whose fee was taken in the base asset (already off ``held_by_strategy``)."""
        rows = await self.db.fetch(
            "SELECT f.client_order_id, f.fill_id FROM fills f JOIN orders o USING (client_order_id)"
            " WHERE f.client_order_id = ANY($1::text[]) AND f.fee > 0 AND f.fee_asset = split_part(o.symbol, '/', 1)",
            list(client_order_ids),
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["client_order_id"], set()).add(r["fill_id"])
        return out

    async def record(
        self,
        reports: Sequence[tuple[OrderEvent, int]],
        ledger: Sequence[LedgerEntry],
        balances: Iterable[VenueBalance],
        positions: Iterable[Position],
    ) -> None:
        """Store reports (event, delivery time) and what they changed, all or nothing."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            for e, deliver_at in reports:
                await self._event(conn, e, deliver_at)
            if ledger:
                await conn.executemany(
                    "INSERT INTO ledger (exchange, wallet, asset, delta, kind, ref, ts) VALUES ($1,$2,$3,$4,$5,$6,$7)"
                    " ON CONFLICT DO NOTHING",
                    [(x.venue, x.wallet, x.asset, x.delta, x.kind, x.ref, ns_to_datetime(x.ts)) for x in ledger],
                )
            bal = list(balances)
            if bal:
                await conn.executemany(
                    "INSERT INTO balances (exchange, wallet, asset, free, locked, borrowed, interest, updated_at)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7, now()) ON CONFLICT (exchange, wallet, asset) DO UPDATE SET"
                    " free = EXCLUDED.free, locked = EXCLUDED.locked, borrowed = EXCLUDED.borrowed,"
                    " interest = EXCLUDED.interest, updated_at = now()",
                    [(b.exchange, b.wallet, b.asset, b.free, b.locked, b.borrowed, b.interest) for b in bal],
                )
            pos = list(positions)
            if pos:
                await conn.executemany(
                    "INSERT INTO positions (exchange, symbol, margin_mode, amount, entry_price, realized_pnl,"
                    " borrowed, interest, liquidation_price, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9, now())"
                    " ON CONFLICT (exchange, symbol, margin_mode) DO UPDATE SET amount = EXCLUDED.amount,"
                    " entry_price = EXCLUDED.entry_price, realized_pnl = EXCLUDED.realized_pnl,"
                    " borrowed = EXCLUDED.borrowed, interest = EXCLUDED.interest,"
                    " liquidation_price = EXCLUDED.liquidation_price, updated_at = now()",
                    [pos_row(p) for p in pos],
                )

    async def _event(self, conn: asyncpg.Connection, e: OrderEvent, deliver_at: int) -> None:
        key = f"{e.client_order_id}|{e.status}|{e.filled!r}|{e.reason}"
        if not await self._insert_event(conn, e, key, deliver_at):
            # Stored before: a replayed poll after a restart, dropped — unless the order's last word was `unknown`
            # (a read that failed, then found it as it was), which this report settles: stored once more.
            last = await conn.fetchrow(
                "SELECT o.status, max(ev.id) AS id FROM orders o JOIN order_events ev USING (client_order_id)"
                " WHERE o.client_order_id = $1 GROUP BY o.status",
                e.client_order_id,
            )
            if last is None or last["status"] != "unknown" or e.status == "unknown":
                return
            e = msgspec.structs.replace(e, fills=[])  # the same filled amount: its fills were stored with it
            if not await self._insert_event(conn, e, f"{key}|after:{last['id']}", deliver_at):
                return
        await conn.execute(
            """
            INSERT INTO orders (client_order_id, exchange, symbol, side, order_type, amount, status, venue_order_id,
                                filled, avg_price, reason, strategy)
            VALUES ($1, $2, $3, $4, 'market', $5, $6, $7, $5, $8, $9, 'venue')
            ON CONFLICT (client_order_id) DO UPDATE SET status = EXCLUDED.status,
                venue_order_id = EXCLUDED.venue_order_id, filled = EXCLUDED.filled,
                avg_price = EXCLUDED.avg_price, reason = EXCLUDED.reason, updated_at = now()
            """,
            e.client_order_id,
            e.exchange,
            e.symbol,
            e.side,
            d(e.filled),
            e.status,
            e.order_id,
            d(e.avg_price),
            e.reason,
        )
        if e.fills:
            await conn.executemany(
                "INSERT INTO fills (exchange, fill_id, client_order_id, symbol, side, price, amount, fee, fee_asset,"
                " liquidity, ts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING",
                [
                    (
                        e.exchange,
                        f.fill_id,
                        e.client_order_id,
                        e.symbol,
                        e.side,
                        d(f.price),
                        d(f.amount),
                        d(f.fee),
                        f.fee_asset,
                        f.liquidity,
                        ns_to_datetime(f.ts),
                    )
                    for f in e.fills
                ],
            )

    @staticmethod
    async def _insert_event(conn: asyncpg.Connection, e: OrderEvent, key: str, deliver_at: int) -> bool:
        """Store the report under ``key``; False when one is stored under that key already."""
        inserted = await conn.fetchval(
            "INSERT INTO order_events (client_order_id, event_key, payload, ts, deliver_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            e.client_order_id,
            key,
            encode(e),
            ns_to_datetime(e.ts),
            deliver_at,
        )
        return inserted is not None

    async def publish_outbox(self, redis: Redis, bus: BusSettings, now: int, limit: int = 1000) -> int:
        """Publish stored events due by ``now`` not yet on ``orders:events``, each exactly once, in order.

        The XADD and a marker key go in one MULTI; the row is flagged afterwards. A crash between
        the two leaves the marker, and the next call only flags the row instead of publishing again.
        """
        async with self._publishing:
            return await self._publish_outbox(redis, bus, now, limit)

    async def _publish_outbox(self, redis: Redis, bus: BusSettings, now: int, limit: int) -> int:
        rows = await self.db.fetch(
            "SELECT id, payload FROM order_events WHERE NOT published AND deliver_at <= $1 ORDER BY id LIMIT $2",
            now,
            limit,
        )
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        done = await redis.mget([f"{PUBLISHED_MARKER}{i}" for i in ids])
        pipe = redis.pipeline(transaction=True)
        sent = 0
        for r, marker in zip(rows, done, strict=True):
            if marker is None:
                pipe.xadd(streams.ORDERS_EVENTS, {streams.FIELD: r["payload"]}, maxlen=bus.maxlen, approximate=True)
                pipe.set(f"{PUBLISHED_MARKER}{r['id']}", b"1", ex=7 * 86400)
                sent += 1
        if sent:
            pipe.hincrby(streams.stats_key(streams.ORDERS_EVENTS), "entries", sent)
            pipe.hincrby(streams.stats_key(streams.ORDERS_EVENTS), "msgs", sent)
            await pipe.execute()
        await self.db.execute("UPDATE order_events SET published = true WHERE id = ANY($1::bigint[])", ids)
        return sent


def pos_row(p: Position) -> tuple[object, ...]:
    return (
        p.venue,
        p.symbol,
        p.margin_mode,
        p.amount,
        p.entry_price,
        p.realized_pnl,
        p.borrowed,
        p.interest,
        p.liquidation_price,
    )
