"""Ingest's commands: `tradewind normalize`, `tradewind replay-server`, `tradewind capture`."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import sys
import time
from pathlib import Path
from typing import IO

import click

from services.ingest.capture import CaptureError
from services.ingest.venues import NAMES, UnknownVenue

EXCHANGES = click.Choice(sorted(NAMES))


@click.command()
@click.option(
    "--exchange",
    "-e",
    type=EXCHANGES,
    default=None,
    help="venue that recorded FILE (default: told by the file's name or folder)",
)
@click.option(
    "--markets",
    "markets_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="the venue's market list (REST body) when the capture has none of its own",
)
@click.argument("file", type=click.Path(path_type=Path))
def normalize(exchange: str | None, markets_file: Path | None, file: Path) -> None:
    """Print the normalized messages of a raw capture as JSON lines.

    FILE is a plain capture (one raw frame per line), a cryptofeed recorder session (a ws file or
    its folder) or an hftbacktest feed, `.gz` or not. Unusable frames are reported on stderr with
    their line; the exit status is 0 unless FILE cannot be read or not one frame was usable (2).
    """
    from services.ingest.normalize import main_stdout
    from shared.cli_support import InputError

    try:
        sys.exit(main_stdout(file, exchange, markets_file))
    except (CaptureError, UnknownVenue, ValueError, OSError) as exc:
        raise InputError(str(exc)) from None


@click.command("replay-server")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="a capture file, a session folder, or a tree of them (e.g. shared/data/ws)",
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="1 = recorded pace, 10 = ten times faster, 0 = as fast as possible",
)
@click.option("--loop", is_flag=True, help="at the end, close with 1001 so clients reconnect and replay again")
@click.option("--exchange", "-e", type=EXCHANGES, default=None, help="venue of captures whose names don't say")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port")
@click.option(
    "--drop-after",
    type=int,
    default=None,
    metavar="N",
    help="cut the first connection (no close frame) after N frames: a reconnect drill",
)
def replay_server(data: Path, speed: float, loop: bool, exchange: str | None, host: str, port: int,
                  drop_after: int | None) -> None:  # fmt: skip
    """Serve recorded captures as a local exchange: websocket + REST, in each venue's own format.

    Point a venue's base_url_ws / base_url_http at the printed URLs, e.g.
    TRADEWIND_INGEST__VENUES__BINANCE__BASE_URL_WS=ws://127.0.0.1:PORT/binance.
    """
    import socket

    from services.ingest.replay import serve
    from shared.cli_support import InputError, RuntimeFailure

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(data, exchange, speed, loop, host, port, drop_after))
    except KeyboardInterrupt:
        pass
    except (CaptureError, UnknownVenue, ValueError) as exc:
        raise InputError(str(exc)) from None
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: cannot resolve ({exc.strerror or exc})") from None
    except OSError as exc:
        raise RuntimeFailure(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


class PlainWriter:
    """The plain capture format: one raw frame per line; REST bodies as ``<url> -> <ts>: <body>``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.frames = 0

    def frame(self, frame: str | bytes, recv_ts: int) -> None:
        if isinstance(frame, bytes):
            try:
                frame = frame.decode()
            except UnicodeDecodeError:
                frame = repr(frame)
        self.out.write(frame.replace("\n", " ") + "\n")
        self.frames += 1

    def rest(self, url: str, body: bytes, recv_ts: int) -> None:
        self.out.write(f"{url} -> {recv_ts / 1e9:.6f}: {body.decode(errors='replace')}\n")


@click.command()
@click.option("--exchange", "-e", type=EXCHANGES, required=True)
@click.option("--symbols", "-s", required=True, help="unified symbols, comma-separated: BTC/USDT,ETH/USDT")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="capture file to write (.gz: gzip)",
)
@click.option("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: Ctrl-C)")
@click.option("--base-url-ws", default=None, help="override the venue's websocket base URL (e.g. a replay server)")
@click.option("--base-url-http", default=None, help="override the venue's REST base URL")
def capture(exchange: str, symbols: str, out: Path, duration: float | None, base_url_ws: str | None,
            base_url_http: str | None) -> None:  # fmt: skip
    """Record raw frames of a live venue in the plain format, for `normalize` and `replay-server`."""
    from shared.cli_support import load_settings_or_exit

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings_or_exit()
    wanted = [s.strip() for s in symbols.split(",") if s.strip()]
    try:
        frames = asyncio.run(run_capture(settings.ingest, exchange, wanted, out, duration, base_url_ws, base_url_http))
    except KeyboardInterrupt:
        return
    except (ValueError, KeyError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"capture: {frames} frames written to {out}", err=True)


async def run_capture(
    ingest: object,
    exchange: str,
    symbols: list[str],
    out: Path,
    duration: float | None,
    base_url_ws: str | None = None,
    base_url_http: str | None = None,
) -> int:
    """Connect the venue's production connector and write what it receives; return frames written."""
    import aiohttp

    from services.ingest.feed import NullSink
    from services.ingest.venues import get
    from shared.sections.ingest import IngestSettings, VenueSettings

    assert isinstance(ingest, IngestSettings)
    venue = get(exchange)
    configured = ingest.venues.get(exchange)
    if configured is None and not (base_url_ws and base_url_http):
        raise ValueError(f"no ingest.venues.{exchange} settings; pass --base-url-ws and --base-url-http")
    base = configured or VenueSettings(base_url_ws=base_url_ws or "", base_url_http=base_url_http or "")
    update: dict[str, object] = {"symbols": symbols}
    if base_url_ws:
        update["base_url_ws"] = base_url_ws
    if base_url_http:
        update["base_url_http"] = base_url_http
    settings = base.model_copy(update=update)
    opener = gzip.open if out.suffix == ".gz" else open
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        markets, body = await venue.fetch_markets(http, settings.base_url_http)
        with opener(out, "wt", encoding="utf-8") as fh:
            writer = PlainWriter(fh)
            writer.rest(settings.base_url_http.rstrip("/") + venue.markets_path, body, time.time_ns())
            connectors = venue.connectors(settings, ingest, NullSink(), markets, http=http)
            for c in connectors:
                c.tap = writer
            tasks = [asyncio.create_task(c.run()) for c in connectors]
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*tasks), duration)
            finally:
                for c in connectors:
                    c.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
    return writer.frames
