"""`tradewind download`: backfill OHLCV bars (and public trades) from a venue through ccxt, resumable."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from services.ingest.download import BadRequest, Downloader, DownloadError, Sink, make_exchange
from services.ingest.download_sinks import CsvSink, DbSink
from shared.cli_support import (
    NETWORK_TIMEOUT_S,
    InputError,
    RuntimeFailure,
    load_settings_or_exit,
    progress_bar,
    reaching,
    running_stack,
)
from shared.config import Settings


def parse_date(text: str, option: str) -> int:
    """Milliseconds since the epoch of ``2024-01-31`` or ``2024-01-31T12:00`` (UTC unless an offset is given)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {text!r}: expected a date like 2024-01-31 or 2024-01-31T12:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@click.command()
@click.option(
    "--exchange", required=True, help="a ccxt exchange id (binance, kraken, ...) or an executor.live_venues name"
)
@click.option(
    "--symbol", "symbols", multiple=True, required=True, metavar="B/Q", help="market, e.g. BTC/USDT (repeatable)"
)
@click.option("--timeframe", default="1m", show_default=True, help="bar length as the venue names it (1m, 5m, 1h, 1d)")
@click.option("--since", required=True, metavar="DATE", help="first bar/trade to fetch (UTC date or ISO time)")
@click.option("--until", default=None, metavar="DATE", help="stop before this time (default: now, closed bars only)")
@click.option("--trades", is_flag=True, help="also download public trades (into DIR/trades/ or the trades table)")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="CSV folder, one <exchange>__<BASE>-<QUOTE>.csv per market (what `tradewind train --data` reads)",
)
@click.option("--db", "to_db", is_flag=True, help="store in PostgreSQL (bars table; trades table with --trades)")
@click.option(
    "--retry-wait",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="S",
    help="first wait after a rate-limit answer (doubles per retry, 5 retries)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary on stdout")
def download(exchange: str, symbols: tuple[str, ...], timeframe: str, since: str, until: str | None,
             trades: bool, out_dir: Path | None, to_db: bool, retry_wait: float, as_json: bool) -> None:  # fmt: skip
    """Download history through ccxt (with its rate limits) into a CSV folder or PostgreSQL.

    A rerun fetches only what is missing: bars after the last stored one (and before the first, when
    --since is earlier). Bars the venue does not have are reported as gaps, never filled in.
    """
    if (out_dir is None) == (not to_db):
        raise InputError("--out DIR or --db: expected exactly one destination")
    since_ms = parse_date(since, "--since")
    until_ms = parse_date(until, "--until") if until else None
    if until_ms is not None and since_ms >= until_ms:
        raise InputError(f"--since {since} is not before --until {until}: expected an earlier --since")
    settings = load_settings_or_exit(service_name="download")
    name = exchange.strip().lower()
    try:
        client = make_exchange(name, settings.executor.live_venues.get(name))
    except BadRequest as exc:
        raise InputError(str(exc)) from None
    if timeframe not in (client.timeframes or {}):
        known = ", ".join(list(client.timeframes or {})[:12])
        raise InputError(f"--timeframe {timeframe!r}: {name} offers {known}")
    step = client.parse_timeframe(timeframe) * 1000
    now_closed = (int(datetime.now(UTC).timestamp() * 1000) // step) * step  # the bar still open is not history
    end = min(until_ms, now_closed) if until_ms is not None else now_closed
    if since_ms >= end:
        raise InputError(f"--since {since}: expected a time before {'--until' if until_ms else 'now'}")
    summary = asyncio.run(_run(settings, client, name, list(symbols), timeframe, since_ms, end, trades, out_dir,
                               retry_wait))  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary))
        return
    for r in summary["markets"]:
        gaps = f", {len(r['gaps'])} gap(s) at the venue" if r["gaps"] else ""
        click.echo(
            f"{r['exchange']} {r['symbol']} {r['kind']}: {r['fetched']} new rows ({r['first']} .. {r['last']}){gaps}"
        )


async def _run(settings: Settings, client: Any, name: str, symbols: list[str], timeframe: str, since_ms: int,
               until_ms: int, trades: bool, out_dir: Path | None, retry_wait: float) -> dict[str, Any]:  # fmt: skip
    downloader = Downloader(client, name, retry_wait_s=retry_wait)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(client.close)
        sink: Sink
        where: str
        if out_dir is not None:
            sink, where = CsvSink(out_dir), str(out_dir)
        else:
            from shared.storage.db import Database

            url = running_stack(settings, redis=False, database=True).database
            with reaching("PostgreSQL", url):
                db = await Database.connect(url, settings.storage, NETWORK_TIMEOUT_S)
                stack.push_async_callback(db.close)
                await db.migrate()
            sink, where = DbSink(db), "postgresql"
        try:
            markets = await downloader.markets()
            unknown = [s for s in symbols if s.upper() not in markets]
            if unknown:
                raise InputError(f"--symbol {unknown[0]!r}: {name} does not list it (e.g. {next(iter(markets), '?')})")
            results = []
            for symbol in (s.upper() for s in symbols):
                with progress_bar(until_ms - since_ms, f"{name} {symbol} {timeframe}") as progress:
                    results.append(await downloader.bars(sink, symbol, timeframe, since_ms, until_ms,
                                                         progress))  # fmt: skip
                if trades:
                    with progress_bar(until_ms - since_ms, f"{name} {symbol} trades") as progress:
                        results.append(await downloader.trades(sink, symbol, since_ms, until_ms,
                                                               progress))  # fmt: skip
        except BadRequest as exc:
            raise InputError(str(exc)) from None
        except DownloadError as exc:
            raise RuntimeFailure(str(exc)) from None
        except ValueError as exc:  # a stored file that is not ours to extend
            raise InputError(str(exc)) from None
    return {"exchange": name, "timeframe": timeframe, "destination": where,
            "markets": [r.as_dict() for r in results]}  # fmt: skip
