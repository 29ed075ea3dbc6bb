"""Durable halts: the set of active halts outlives every restart of every service.

A halt is identified by its cause and scope (``human:*``, ``human:binance``, ``drawdown:*``,
``feed:kraken``). Every halt or resume is written to the Redis hash ``tw:halts`` in the same
MULTI as its ``risk:control`` entry, and to PostgreSQL's ``halts`` table when a database is at
hand; an executor or risk service loads the set before it does anything else, then follows the
stream. Applying a control is idempotent, so an entry seen twice (once in the loaded set, once
on the stream) changes nothing.

The loaded set is trusted because of who writes it, not re-verified: ``send`` is its only writer
and signs before it writes, and the per-role Redis users leave the hash writable only by the roles
that hold a key (risk, executor, the operator). Per-halt signatures would not close the gap that
matters: deleting a halt, which no signature on the halts that remain reveals.

Who lifts what: a human resume lifts human halts in its scope (a resume of every venue lifts the
human halts of every venue); a ``drawdown`` or ``reconcile`` halt is lifted only by a human resume
with ``force`` (`tradewind resume --force --reason TEXT`, recorded); any other cause (``feed``,
``stale``) only by its issuer, once the cause is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from shared.bus import as_str, entry_key
from shared.schemas import RiskControl, encode, streams
from shared.signing import Signer
from shared.storage import Database

HUMAN = "human"
FORCED = frozenset({"drawdown", "reconcile"})  # a human lifts these only with --force


class Halt(msgspec.Struct, frozen=True):
    cause: str
    exchange: str | None  # None: every venue
    reason: str
    issued_by: str
    ts: int

    @property
    def id(self) -> str:
        return halt_id(self.cause, self.exchange)


def halt_id(cause: str, exchange: str | None) -> str:
    return f"{cause}:{exchange or '*'}"


def cause_of(control: RiskControl) -> str:
    return control.cause or HUMAN


@dataclass(frozen=True, slots=True)
class Change:
    added: tuple[Halt, ...] = ()
    removed: tuple[str, ...] = ()
    entry_id: str = ""  # the control's entry on risk:control, once ``send`` published it

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class HaltSet:
    """The active halts, and the rule for what a control adds or lifts."""

    def __init__(self, halts: Iterable[Halt] = ()) -> None:
        self.halts: dict[str, Halt] = {h.id: h for h in halts}

    def apply(self, control: RiskControl) -> Change:
        """Apply a halt or resume; return what changed (nothing for anything else, or a repeat)."""
        if control.action == "halt":
            halt = Halt(cause_of(control), control.exchange, control.reason or "halted", control.issued_by, control.ts)
            if halt.id in self.halts:
                return Change()
            self.halts[halt.id] = halt
            return Change(added=(halt,))
        if control.action != "resume":
            return Change()
        cause = cause_of(control)
        if cause == HUMAN:
            causes = {HUMAN, *FORCED} if control.force else {HUMAN}
            lifted = [
                i
                for i, h in self.halts.items()
                if h.cause in causes and (control.exchange is None or h.exchange == control.exchange)
            ]
        else:
            lifted = [i for i in (halt_id(cause, control.exchange),) if i in self.halts]
        for i in lifted:
            del self.halts[i]
        return Change(removed=tuple(lifted))

    def reason(self, exchange: str | None = None) -> str:
        """Why ``exchange`` is halted by a halt of its own (None: by a halt of every venue); "" if it is not."""
        reasons = [h.reason for h in self.halts.values() if h.exchange == exchange]
        return "; ".join(sorted(reasons))

    def by_cause(self, cause: str) -> list[Halt]:
        return [h for h in self.halts.values() if h.cause == cause]

    def __iter__(self) -> Iterator[Halt]:
        return iter(list(self.halts.values()))

    def __len__(self) -> int:
        return len(self.halts)


_EXISTS = "_"  # a field always present once the hash was written: a missing hash means Redis lost it


def _decode(fields: Mapping[bytes | str, bytes | str]) -> list[Halt]:
    keys = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    return [msgspec.json.decode(v, type=Halt) for k, v in keys.items() if k != _EXISTS]


async def load(redis: Redis, db: Database | None = None) -> HaltSet:
    """The active halts: Redis's hash, or PostgreSQL's table when Redis lost the hash (or never had it)."""
    fields = await redis.hgetall(streams.HALTS)
    if fields or db is None:
        return HaltSet(_decode(fields))
    return HaltSet(await _stored(db))


async def _stored(db: Database) -> list[Halt]:
    rows = await db.fetch("SELECT cause, exchange, reason, issued_by, ts FROM halts")
    return [Halt(r["cause"], r["exchange"], r["reason"], r["issued_by"], r["ts"]) for r in rows]


async def send(
    redis: Redis, controls: Sequence[RiskControl], *, signer: Signer, maxlen: int, db: Database | None = None
) -> list[Change]:
    """Sign ``controls`` as ``signer``, publish them on risk:control and apply their halts and resumes
    to the stored set, in one transaction (retried if another writer changed the set meanwhile); then
    to PostgreSQL. The one path that publishes controls: everything on the stream is signed here.
    Every key of the transaction is in risk:control's hash slot (``streams.HALTS``), as a cluster needs."""
    if not controls:
        return []
    controls = [signer.sign(c) for c in controls]
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(streams.HALTS)
                fields = await pipe.hgetall(streams.HALTS)
                lost = await _stored(db) if not fields and db is not None else []  # Redis lost the set: rebuild it
                current = HaltSet([*_decode(fields), *lost])
                changes = [current.apply(c) for c in controls]
                pipe.multi()
                pipe.hset(streams.HALTS, _EXISTS, "1")
                for h in lost:
                    pipe.hset(streams.HALTS, h.id, msgspec.json.encode(h))
                for change in changes:
                    for h in change.added:
                        pipe.hset(streams.HALTS, h.id, msgspec.json.encode(h))
                    if change.removed:
                        pipe.hdel(streams.HALTS, *change.removed)
                for c in controls:
                    pipe.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(c)}, maxlen=maxlen, approximate=True)
                pipe.hincrby(streams.stats_key(streams.RISK_CONTROL), "entries", len(controls))
                pipe.hincrby(streams.stats_key(streams.RISK_CONTROL), "msgs", len(controls))
                results = await pipe.execute()
                break
            except WatchError:
                continue
    ids = results[-2 - len(controls) : -2]  # the XADDs' answers, before the two HINCRBYs
    changes = [replace(c, entry_id=as_str(i)) for c, i in zip(changes, ids, strict=True)]
    if db is not None and any(changes):
        await store(db, changes)
    return changes


@dataclass(frozen=True, slots=True)
class Confirmations:
    """What the consumer groups of risk:control did with one control entry."""

    confirmed_by: list[str]  # delivered and acknowledged: in force there
    refused_by: dict[str, str]  # dead-lettered (signature, authority, replay): NOT in force there; group -> why
    not_confirmed: list[str]  # neither, within the wait: down, stalled or slow

    def as_dict(self) -> dict[str, object]:
        return {"confirmed_by": self.confirmed_by, "refused_by": self.refused_by, "not_confirmed": self.not_confirmed}


async def confirmations(redis: Redis, entry_id: str, wait_s: float) -> Confirmations:
    """Wait up to ``wait_s`` until every consumer group of risk:control with consumers has handled
    ``entry_id`` (an executor acknowledges a halt once it is in force and the orders it checked before
    it are placed); say who did, who refused it (its dead letter names the group) and who did not answer.
    A group without consumers is not waited for: whoever joins it starts from the durable set. ``wait_s``
    0: nothing is checked (every list empty)."""
    if wait_s <= 0:
        return Confirmations([], {}, [])
    deadline = time.monotonic() + wait_s
    target = entry_key(entry_id)
    while True:
        handled: list[str] = []
        pending: list[str] = []
        for g in await redis.xinfo_groups(streams.RISK_CONTROL):
            if not g["consumers"]:
                continue
            name, delivered = as_str(g["name"]), entry_key(as_str(g["last-delivered-id"]))
            behind = delivered < target or await redis.xpending_range(streams.RISK_CONTROL, name, entry_id, entry_id, 1)
            (pending if behind else handled).append(name)
        if not pending or time.monotonic() >= deadline:
            refused = await _refusals(redis, entry_id)
            done = sorted(g for g in handled if g not in refused)
            return Confirmations(done, {g: refused[g] for g in sorted(refused) if g in handled}, sorted(pending))
        await asyncio.sleep(0.02)  # polls Redis until the groups catch up or the deadline passes


async def _refusals(redis: Redis, entry_id: str) -> dict[str, str]:
    """Groups that dead-lettered ``entry_id`` (acknowledged it without applying it), with their reason."""
    out = {}
    letters = await redis.xrange(streams.dead_letter(streams.RISK_CONTROL), min=entry_id, max="+")
    for _, fields in letters or []:
        f = {as_str(k): as_str(v) for k, v in (fields or {}).items() if as_str(k) != streams.FIELD}
        if f.get("id") == entry_id:
            out[f.get("group", "?")] = f.get("error", "")
    return out


async def store(db: Database, changes: Iterable[Change]) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        for change in changes:
            if change.removed:
                await conn.execute("DELETE FROM halts WHERE id = ANY($1::text[])", list(change.removed))
            for h in change.added:
                await conn.execute(
                    "INSERT INTO halts (id, cause, exchange, reason, issued_by, ts) VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (id) DO UPDATE SET reason = $4, issued_by = $5, ts = $6",
                    h.id,
                    h.cause,
                    h.exchange,
                    h.reason,
                    h.issued_by,
                    h.ts,
                )


def describe(halts: HaltSet) -> list[dict[str, object]]:
    """The halts as plain dicts, for JSON output."""
    return [json.loads(msgspec.json.encode(h)) | {"id": h.id} for h in sorted(halts, key=lambda h: h.id)]
