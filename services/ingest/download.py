"""History backfill through ccxt: OHLCV bars and public trades of one market, page by page.

A download only asks the venue for what its sink lacks (``services.ingest.download_sinks`` tells
what is stored), so a rerun after an interruption continues where the last one stopped. Bars the
venue does not have are reported as gaps, never invented. Rate-limit answers (HTTP 429, and the
venue being briefly unavailable) are waited out and retried; ccxt's own ``enableRateLimit`` spaces
the requests so that this should be rare.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import ccxt.async_support as ccxt

from shared.sections.executor import CcxtVenue

log = logging.getLogger(__name__)
T = TypeVar("T")
TRADE_WINDOW_MS = 3_600_000
RETRYABLE = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.ExchangeNotAvailable, ccxt.RequestTimeout)


class DownloadError(Exception):
    """The venue kept refusing (or failed) after the retries: what, where, why."""


class BadRequest(ValueError):
    """The venue does not know this exchange, market or timeframe."""


class Sink(Protocol):
    """Where downloaded rows go, and what is already there (for resuming)."""

    async def bar_span(self, exchange: str, symbol: str, timeframe: str) -> tuple[int, int] | None: ...
    async def write_bars(self, exchange: str, symbol: str, timeframe: str, rows: list[list[float]]) -> None: ...
    async def last_trade(self, exchange: str, symbol: str) -> tuple[int, set[str]] | None: ...
    async def write_trades(self, exchange: str, symbol: str, trades: list[dict[str, Any]]) -> None: ...


@dataclass
class Gap:
    """Bars missing at the venue: from ``start_ms`` (the first missing bar) to before ``end_ms``."""

    start_ms: int
    end_ms: int
    bars: int

    def as_dict(self) -> dict[str, Any]:
        return {"from": iso(self.start_ms), "to": iso(self.end_ms), "missing_bars": self.bars}


@dataclass
class Result:
    """One market's download: what was stored before, fetched now, and what the venue lacks."""

    exchange: str
    symbol: str
    kind: str  # "ohlcv" or "trades"
    fetched: int = 0
    requests: int = 0
    retries: int = 0
    resumed_from: int | None = None  # ms of the first row asked for after what was stored
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: list[Gap] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "kind": self.kind,
            "fetched": self.fetched,
            "requests": self.requests,
            "retries": self.retries,
            "resumed_from": iso(self.resumed_from) if self.resumed_from is not None else None,
            "first": iso(self.first_ms) if self.first_ms is not None else None,
            "last": iso(self.last_ms) if self.last_ms is not None else None,
            "gaps": [g.as_dict() for g in self.gaps],
        }


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_exchange(name: str, venue: CcxtVenue | None) -> ccxt.Exchange:
    """A ccxt client for public history: ``venue`` (a configured ``executor.live_venues`` entry) gives
    its ccxt class, test network and URL overrides; otherwise ``name`` is a ccxt exchange id."""
    ccxt_id = venue.ccxt_id if venue is not None else name
    cls = getattr(ccxt, ccxt_id, None) if ccxt_id in ccxt.exchanges else None
    if cls is None:
        raise BadRequest(f"--exchange {name!r}: expected a ccxt exchange id (e.g. binance) or a configured venue")
    options: dict[str, Any] = {"fetchCurrencies": False}
    if venue is not None:
        options.update(fetchMarkets={"types": list(venue.market_types)}, fetchMargins=venue.margin)
    exchange = cls({"enableRateLimit": True, "timeout": venue.timeout_ms if venue else 10_000, "options": options})
    if venue is not None:
        if venue.testnet:
            exchange.set_sandbox_mode(True)
        for key, url in venue.urls.items():
            *path, last = key.split(".")
            node = exchange.urls["api"]
            for part in path:
                node = node.setdefault(part, {})
            node[last] = url
    return exchange


class Downloader:
    """Fetch pages from one ccxt client with retries on rate limits; ``progress(done_ms, total_ms)`` per page."""

    def __init__(self, exchange: ccxt.Exchange, name: str, page: int = 1000, retries: int = 5,
                 retry_wait_s: float = 1.0) -> None:  # fmt: skip
        self.exchange, self.name = exchange, name
        self.page, self.retries, self.retry_wait_s = page, retries, retry_wait_s

    async def _call(self, result: Result, fetch: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.retries + 1):
            result.requests += 1
            try:
                return await fetch()
            except RETRYABLE as exc:
                if attempt == self.retries:
                    raise DownloadError(
                        f"{self.name} {result.symbol}: still refused after {self.retries} retries "
                        f"({type(exc).__name__}: {str(exc)[:200]})"
                    ) from exc
                result.retries += 1
                wait = self.retry_wait_s * 2**attempt
                log.warning("%s %s: %s; retrying in %.1f s", self.name, result.symbol, type(exc).__name__, wait)
                await asyncio.sleep(wait)
            except ccxt.BadSymbol as exc:
                raise BadRequest(f"--symbol {result.symbol!r}: {self.name} does not list it") from exc
            except ccxt.BaseError as exc:
                raise DownloadError(f"{self.name} {result.symbol}: {type(exc).__name__}: {str(exc)[:200]}") from exc
        raise AssertionError("unreachable")

    async def markets(self) -> dict[str, Any]:
        probe = Result(self.name, "(markets)", "markets")
        markets: dict[str, Any] = await self._call(probe, self.exchange.load_markets)
        return markets

    async def bars(self, sink: Sink, symbol: str, timeframe: str, since_ms: int, until_ms: int,
                   progress: Callable[[int, int], None]) -> Result:  # fmt: skip
        """Bars opening in [since, until) that the sink lacks; gaps between stored and fetched bars reported."""
        step = self.exchange.parse_timeframe(timeframe) * 1000
        result = Result(self.name, symbol, "ohlcv")
        span = await sink.bar_span(self.name, symbol, timeframe)
        ranges = [(since_ms, until_ms)]
        if span is not None:  # only the parts before the first and after the last stored bar
            first, last = span
            ranges = [
                r for r in ((since_ms, min(first, until_ms)), (max(since_ms, last + step), until_ms)) if r[0] < r[1]
            ]
            result.resumed_from = ranges[-1][0] if ranges else None
        done = 0
        for start, end in ranges:  # the bar before ``start`` and the one at ``end`` are stored (or the bounds)
            previous, cursor = start - step, start
            # history before the stored bars is written once (a CSV is rewritten to put it first)
            head: list[list[float]] | None = [] if span is not None and end <= span[0] else None
            while cursor < end:
                fetch = functools.partial(self.exchange.fetch_ohlcv, symbol, timeframe, since=cursor, limit=self.page)
                rows = await self._call(result, fetch)
                rows = [r for r in rows if cursor <= r[0] < end]
                if not rows:
                    break
                for row in rows:
                    if row[0] - previous > step:
                        result.gaps.append(Gap(previous + step, int(row[0]), int((row[0] - previous) // step - 1)))
                    previous = int(row[0])
                if head is None:
                    await sink.write_bars(self.name, symbol, timeframe, rows)
                else:
                    head += rows
                result.fetched += len(rows)
                result.first_ms = min(int(rows[0][0]), result.first_ms or int(rows[0][0]))
                result.last_ms = max(int(rows[-1][0]), result.last_ms or int(rows[-1][0]))
                done += previous + step - cursor
                progress(done, until_ms - since_ms)
                cursor = previous + step
            if head:
                await sink.write_bars(self.name, symbol, timeframe, head)
            if end - previous > step:
                result.gaps.append(Gap(previous + step, end, int((end - previous) // step - 1)))
        return result

    async def trades(self, sink: Sink, symbol: str, since_ms: int, until_ms: int,
                     progress: Callable[[int, int], None]) -> Result:  # fmt: skip
        """Public trades in [since, until) after the last stored one, an hour's window at a time (Binance
        answers no wider); within a window page on from the last trade's millisecond (its trades deduplicated)
        until a page brings nothing new."""
        result = Result(self.name, symbol, "trades")
        stored = await sink.last_trade(self.name, symbol)
        cursor, seen = (max(since_ms, stored[0]), stored[1]) if stored else (since_ms, set())
        if stored:
            result.resumed_from = cursor
        start = cursor
        while cursor < until_ms:
            window_end = min(cursor + TRADE_WINDOW_MS, until_ms) - 1  # inclusive, as the venue reads it
            fetch = functools.partial(
                self.exchange.fetch_trades, symbol, since=cursor, limit=self.page, params={"until": window_end}
            )
            rows = await self._call(result, fetch)
            fresh = [t for t in rows if cursor <= t["timestamp"] <= window_end and str(t["id"]) not in seen]
            if not fresh:
                cursor, seen = window_end + 1, set()
                progress(cursor - start, until_ms - start)
                continue
            await sink.write_trades(self.name, symbol, fresh)
            result.fetched += len(fresh)
            result.first_ms = result.first_ms if result.first_ms is not None else int(fresh[0]["timestamp"])
            result.last_ms = int(fresh[-1]["timestamp"])
            same_ms = result.last_ms == cursor
            cursor = result.last_ms  # the next page starts at the last millisecond: trades there may go on
            seen = {str(t["id"]) for t in fresh if t["timestamp"] == cursor} | (seen if same_ms else set())
            progress(cursor - start, until_ms - start)
        return result
