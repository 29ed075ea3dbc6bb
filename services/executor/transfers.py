"""Wallet transfers asked of the executor on ``orders:transfers`` (the risk service's margin top-ups).

Each transfer id is claimed once (SET NX, like an order's client id); the gateway moves the funds and
the outcome goes, in one round trip with the claim's final value, to ``orders:events`` (the risk
portfolio books it) and ``risk:events`` (``margin_top_up``, for people). A transfer claimed but with no
outcome recorded (a crash or an error mid-way; the entry comes back after ``claim_idle_ms``) may have
moved: it is reported ``unknown`` and never resent, and so is one whose venue call failed other than
by a refusal (a timeout): the wallets, as the executor reads them, say what happened.

Halts do not stop a transfer: moving our own collateral into a margin wallet adds no exposure, and it
is what keeps a hedge from being bought back or liquidated while trading is halted. Only top-ups are
accepted (spot into a margin wallet), and only fresh ones: a request older than ``MAX_AGE_S`` (one left
on the stream while no executor ran) is refused, and the risk service judges the account again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Literal

import msgspec
from redis.asyncio import Redis

from services.executor.gateway import Gateway, TransferRefused
from shared.bounded import LruDict
from shared.bus import Delivery, is_cluster
from shared.config import BusSettings
from shared.paper import dec
from shared.schemas import RiskEvent, WalletTransfer, encode, streams
from shared.schemas.messages import TransferStatus

log = logging.getLogger(__name__)

CLAIM_KEY = "tw:executor:transfer:"  # + transfer id: "claimed:<run>" until its outcome is recorded there
CLAIM_TTL_S = 7 * 86400
MAX_AGE_S = 60.0
QUANTUM = Decimal("1e-8")  # venues book amounts to 8 decimals
SEVERITY: dict[str, Literal["info", "warning", "critical"]] = {
    "done": "info",
    "rejected": "warning",
    "unknown": "critical",
}


class Transfers:
    """The handler of ``orders:transfers``; ``outcomes`` remembers this run's, to publish one again after a
    Redis error between the move and the outcome's record (the venue is never asked twice)."""

    def __init__(
        self,
        redis: Redis,
        bus: BusSettings,
        gateway: Gateway,
        run_id: str,
        wake: Callable[[], None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.redis = redis
        self.bus = bus
        self.gateway = gateway
        self.marker = f"claimed:{run_id}"
        self.wake = wake  # the reports loop: store the transfer's ledger entries and the new balances now
        self.clock = clock
        self.outcomes: LruDict[str, WalletTransfer] = LruDict(10_000)
        self._atomic = not is_cluster(redis)

    async def on_transfers(self, deliveries: list[Delivery]) -> None:
        for m in (m for d in deliveries for m in d.messages):
            if isinstance(m, WalletTransfer) and m.status == "requested":
                await self.handle(m)

    async def handle(self, t: WalletTransfer) -> None:
        key = f"{CLAIM_KEY}{t.transfer_id}"
        if not await self.redis.set(key, self.marker, nx=True, ex=CLAIM_TTL_S):
            state = await self.redis.get(key)
            if state is not None and not (state.decode() if isinstance(state, bytes) else state).startswith("claimed:"):
                return  # done before: its outcome was published with this record
            known = self.outcomes.get(t.transfer_id)
            if known is not None:
                await self._publish(known)
                return
            log.error("transfer %s was claimed with no outcome recorded: it may have moved; not resent", t.transfer_id)
            await self._finish(t, "unknown", reason="transfer.claimed_without_outcome")
            return
        why = self._refusal(t)
        if why:
            await self._finish(t, "rejected", reason=why)
            return
        amount = dec(t.amount).quantize(QUANTUM, rounding=ROUND_DOWN)
        try:
            venue_id = await self.gateway.move(t.exchange, t.asset, amount, t.from_wallet, t.to_wallet)
        except TransferRefused as exc:
            log.warning("transfer %s refused: %s", t.transfer_id, exc)
            await self._finish(t, "rejected", reason=f"venue.refused: {exc}")
            return
        except Exception as exc:  # a timeout, a lost answer: it may have moved, so it is never resent
            log.error("transfer %s: outcome unknown after %s; not resent", t.transfer_id, type(exc).__name__)
            await self._finish(t, "unknown", reason=f"venue.{type(exc).__name__}")
            return
        finally:
            self.wake()
        await self._finish(t, "done", amount=float(amount), venue_id=venue_id)

    def _refusal(self, t: WalletTransfer) -> str:
        if not math.isfinite(t.amount) or dec(t.amount).quantize(QUANTUM, rounding=ROUND_DOWN) <= 0:
            return "transfer.bad_amount"
        if t.from_wallet != "spot" or not (t.to_wallet == "cross" or t.to_wallet.startswith("isolated:")):
            return "transfer.not_a_top_up"  # spot into a margin wallet only: nothing else asks for a transfer
        if self.clock() - t.ts > MAX_AGE_S * 1e9:
            return "transfer.expired"
        return ""

    async def _finish(
        self, t: WalletTransfer, status: TransferStatus, reason: str = "", amount: float = 0.0, venue_id: str = ""
    ) -> None:
        outcome = msgspec.structs.replace(
            t, status=status, reason=reason, amount=amount or t.amount, venue_transfer_id=venue_id, ts=self.clock()
        )
        self.outcomes[t.transfer_id] = outcome
        await self._publish(outcome)

    async def _publish(self, outcome: WalletTransfer) -> None:
        """The outcome on ``orders:events`` and ``risk:events``, and as the claim's value, in one round trip."""
        detail: dict[str, float | int | str | bool | None] = {
            "transfer_id": outcome.transfer_id,
            "status": outcome.status,
            "asset": outcome.asset,
            "amount": outcome.amount,
            "from_wallet": outcome.from_wallet,
            "to_wallet": outcome.to_wallet,
            "venue_transfer_id": outcome.venue_transfer_id,
            "reason": outcome.reason,
        }
        event = RiskEvent("margin_top_up", outcome.ts, SEVERITY[outcome.status], outcome.exchange, None, detail)
        pipe = self.redis.pipeline(transaction=self._atomic)
        for stream, message in ((streams.ORDERS_EVENTS, outcome), (streams.RISK_EVENTS, event)):
            pipe.xadd(stream, {streams.FIELD: encode(message)}, maxlen=self.bus.maxlen, approximate=True)
            pipe.hincrby(streams.stats_key(stream), "entries", 1)
            pipe.hincrby(streams.stats_key(stream), "msgs", 1)
        pipe.set(f"{CLAIM_KEY}{outcome.transfer_id}", f"{outcome.status}:{outcome.venue_transfer_id}", ex=CLAIM_TTL_S)
        await pipe.execute()
        log.info("transfer %s %s: %s", outcome.transfer_id, outcome.status, detail)
