"""The order path: claim each client order id once, pass the pre-trade guard, hand the order to the gateway.

Two ways in. External producers (the risk service, tools) publish on ``orders:intents`` and the
executor's intents consumer brings their intents here (``on_intents``). The executor's own strategies
hand theirs over directly (``direct``) when the gateway is in-process (the paper venue; a venue across
the network keeps the stream's hop, so market data never waits on its HTTP round trip): each batch is
journaled to ``orders:intents`` in the same Redis round trip as its claims (MULTI/EXEC on one server, a
pipeline on a cluster), so it is as durable as a published intent, is seen by everyone who reads the
stream (the risk service), and is one bus hop shorter. The intents consumer receives the journaled
entry too: an intent this process executed directly is skipped once the direct path has stored it; one
it did not finish (an error, or a kill -9 between journal and submit, found by the next run) goes the
way of any claimed id without an order row: the venue is asked, and the order is sent only if the
venue never received it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from services.executor.gateway import OPEN_STATUSES, Gateway, StoredOrder
from services.executor.store import ExecutorStore
from shared.bus import Delivery, RedisBus, is_cluster
from shared.metrics import ServiceMetrics
from shared.pretrade import PreTradeGuard
from shared.schemas import OrderEvent, OrderIntent, encode, streams

CLAIM_KEY = "tw:executor:claim:"  # + client order id: SET NX before an order is sent
CLAIM_TTL_S = 7 * 86400

Key = tuple[bool, str]  # (cancel, client order id): an intent journaled by ``direct``


class OrderPath:
    """Claims, checks and submits intents; ``open`` once start-up reconciliation is done."""

    def __init__(
        self,
        bus: RedisBus,
        store: ExecutorStore,
        gateway: Gateway,
        guard: PreTradeGuard,
        run_id: str,
        wake: Callable[[], None],
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.redis: Redis = bus.redis
        self.store = store
        self.gateway = gateway
        self.guard = guard
        self.run_id = run_id
        self.wake = wake  # the reports loop: store what the venue reports at once
        self.metrics = metrics
        self.open = False  # until reconcile is done, in-process intents wait on the stream like everyone's
        self.submit_latency_ns: deque[int] = deque(maxlen=100_000)  # intent.ts → handed to the gateway
        self.reduce_only: set[str] = set()  # reduce-only orders sent, not yet acknowledged: halts let them rest
        # journaled by ``direct``, not yet seen by the intents consumer -> whether direct stored it
        self._direct: dict[Key, asyncio.Future[bool]] = {}
        self._atomic = not is_cluster(self.redis)  # a cluster cannot MULTI across the claims' slots
        self._placing = 0  # orders past the guard, being handed to the gateway now
        self._placed = asyncio.Event()  # set while none is
        self._placed.set()

    async def direct(self, batch: Sequence[OrderIntent]) -> None:
        """Execute the intents of this process's strategies: journal and claims in one round trip."""
        if not batch:
            return
        if not self.open or not self.gateway.in_process:  # a network venue: the stream's consumer waits on it
            await self.bus.publish(streams.ORDERS_INTENTS, list(batch))
            return
        intents, cancels = _split(batch)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for m in batch:
            self._direct[(m.cancel, m.client_order_id)] = done
        stored = False
        try:
            fresh = await self._claim(intents, journal=batch)
            await self._execute(intents, fresh, cancels)
            stored = True
        finally:  # the consumer waits on this: it must always resolve (an error, a cancel: it takes over)
            done.set_result(stored)

    async def on_intents(self, deliveries: list[Delivery]) -> None:
        """The intents consumer's handler: what arrived on ``orders:intents``, less what ``direct`` did."""
        batch: list[OrderIntent] = []
        for m in (m for d in deliveries for m in d.messages):
            if isinstance(m, OrderIntent):
                done = self._direct.pop((m.cancel, m.client_order_id), None)
                if done is None or not await done:
                    batch.append(m)
        intents, cancels = _split(batch)
        fresh = await self._claim(intents)
        if self.metrics and len(fresh) < len(intents):
            self.metrics.error("duplicate_intent")
        await self._execute(intents, fresh, cancels)

    async def placed(self) -> None:
        """Return once no order that passed the guard is still being handed to the gateway: after a halt,
        nothing checked before it reaches the venue after the halt is confirmed (what was placed meanwhile
        is cancelled when its acknowledgement arrives: ``guarding.late_cancels``)."""
        await self._placed.wait()

    async def send_cancels(self, cancels: list[OrderIntent]) -> None:
        for cancel in cancels:
            await self.gateway.submit(cancel)
        if cancels:
            self.wake()

    async def _execute(self, intents: dict[str, OrderIntent], fresh: list[str], cancels: list[OrderIntent]) -> None:
        rejected, sent = [], []
        for cid in fresh:
            intent = intents[cid]
            reason = self.guard.check(intent, time.time_ns())
            if reason:
                rejected.append(
                    OrderEvent(
                        cid, intent.exchange, intent.symbol, intent.side, "rejected", time.time_ns(), reason=reason
                    )
                )
            else:
                self._placing += 1
                self._placed.clear()
                try:
                    await self.gateway.submit(intent)
                finally:
                    self._placing -= 1
                    if not self._placing:
                        self._placed.set()
                self.submit_latency_ns.append(time.time_ns() - intent.ts)
                if intent.reduce_only:
                    self.reduce_only.add(cid)
            sent.append(intent)
        await self.send_cancels(cancels)
        await self.store.save_orders(sent)
        if rejected:
            await self.store.record([(e, 0) for e in rejected], [], [], [])
            await self.store.publish_outbox(self.redis, self.bus.settings, time.time_ns())
        self.wake()

    async def _claim(self, intents: dict[str, OrderIntent], journal: Sequence[OrderIntent] = ()) -> list[str]:
        """Return the client ids this batch must execute, in order; duplicates are dropped.

        ``journal``: append these to ``orders:intents`` in the same round trip (before the claims).
        An id already claimed was claimed by an earlier run (``_claimed_before`` says what becomes of it).
        """
        if not intents and not journal:
            return []
        pipe = self.redis.pipeline(transaction=bool(journal) and self._atomic)
        if journal:
            stats = streams.stats_key(streams.ORDERS_INTENTS)
            pipe.xadd(
                streams.ORDERS_INTENTS,
                {streams.FIELD: encode(list(journal))},
                maxlen=self.bus.settings.maxlen,
                approximate=True,
            )
            pipe.hincrby(stats, "entries", 1)
            pipe.hincrby(stats, "msgs", len(journal))
        for cid in intents:
            pipe.set(f"{CLAIM_KEY}{cid}", self.run_id, nx=True, ex=CLAIM_TTL_S)
        results = await pipe.execute()
        if journal and self.metrics:
            self.metrics.count_out(streams.ORDERS_INTENTS, len(journal))
        won = dict(zip(intents, results[3 if journal else 0 :], strict=True))
        for cid in await self._claimed_before([intents[cid] for cid, ok in won.items() if not ok]):
            won[cid] = True
        return [cid for cid, ok in won.items() if ok]

    async def _claimed_before(self, claimed: list[OrderIntent]) -> list[str]:
        """Of these intents an earlier run claimed, the ids to send now: only those the venue never received.

        With no order row, that run died before storing it: the venue is asked. A row a venue report made before
        that run stored the intent (it holds none) gets the intent and, while the order is open, is followed from
        the fills it holds: never sent again, no fill counted twice.
        """
        if not claimed:
            return []
        rows = await self.store.rows_of([i.client_order_id for i in claimed])
        send, store, follow = [], [], []
        for i in claimed:
            cid = i.client_order_id
            if cid in rows:
                has_intent, status, venue_id, filled, avg = rows[cid]
                if not has_intent:
                    store.append(i)
                    if status in OPEN_STATUSES:
                        follow.append(StoredOrder(i, status, venue_id, filled, avg))
                    elif status == "unknown":  # that run was still looking it up
                        self.gateway.track(i)
                continue
            known = await self.gateway.knows(cid, i.exchange, i.symbol, i.margin_mode)  # known: followed now
            if known is None:  # never resend a claimed id blindly: find out what became of it
                self.gateway.track(i)
            if known is False:
                send.append(cid)
            else:
                store.append(i)
        await self.store.save_orders(store)
        for order in follow:
            await self.gateway.follow(order)
        return send


def _split(batch: Sequence[OrderIntent]) -> tuple[dict[str, OrderIntent], list[OrderIntent]]:
    """New orders by client id (a duplicate within the batch dropped) and cancels, in order."""
    intents: dict[str, OrderIntent] = {}
    cancels: list[OrderIntent] = []
    for m in batch:
        if m.cancel:
            cancels.append(m)
        else:
            intents.setdefault(m.client_order_id, m)
    return intents, cancels
