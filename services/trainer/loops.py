"""Looped samples: the online trainer never trains or judges on bars it has already seen.

A replayed capture played with `--loop` (or any feed that starts its history again) sends the same
trades again; with bars timed by receive time they would look like new bars, and a round's held-out
tail could repeat its own training bars. Exchange time gives the loop away: per market it only moves
forward, apart from small reorderings. A trade more than `tolerance` before the latest one seen
starts a replay: from then on only that market's trades newer than any seen pass (the repeats are
dropped, the bars of the first pass kept), the loop is logged once, and the rounds on that market say
so in the registry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.rl.bars import NS_PER_S

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (exchange, symbol)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS_PER_S, UTC).isoformat(timespec="seconds")


@dataclass
class Loop:
    """Where a market's sample started again: exchange time reached, and where it went back to."""

    reached_ns: int
    back_to_ns: int
    dropped: int = 0  # trades dropped since (repeats of the first pass)

    def note(self) -> str:
        return (
            f"the sample looped (exchange time went back from {_iso(self.reached_ns)} to {_iso(self.back_to_ns)}):"
            " trades no newer than those already seen are not used"
        )


class LoopGuard:
    """Per market: the latest exchange time seen, and the loop once one is detected."""

    def __init__(self, tolerance_s: float) -> None:
        self.tolerance_ns = int(tolerance_s * NS_PER_S)
        self.latest: dict[Key, int] = {}
        self.loops: dict[Key, Loop] = {}

    def admit(self, key: Key, ts: int) -> bool:
        """Whether a trade of `key` at exchange time `ts` may be used. Once its exchange time went back by
        more than the tolerance, only trades newer than any seen before pass: a looped sample's repeats
        never do, and a feed that merely sent one stale trade goes on as before with its new ones."""
        latest = self.latest.get(key)
        loop = self.loops.get(key)
        if latest is not None and (ts <= latest if loop else ts < latest - self.tolerance_ns):
            if loop is None:
                loop = self.loops[key] = Loop(latest, ts)
                log.warning("trainer: %s/%s: %s; rounds keep to bars not seen before", *key, loop.note())
            loop.dropped += 1
            return False
        if latest is None or ts > latest:
            self.latest[key] = ts
        return True

    def notes(self, markets: list[Key]) -> list[str]:
        """What a round on `markets` must record about their samples (empty: none looped)."""
        return [f"{e}/{s}: {self.loops[(e, s)].note()}" for e, s in markets if (e, s) in self.loops]
