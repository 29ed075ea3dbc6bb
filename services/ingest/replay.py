"""The replay exchange: recorded captures served over a real local websocket (and REST).

``tradewind replay-server --data PATH [--speed X] [--loop]`` serves every venue found under
PATH at ``ws://HOST:PORT/<exchange>`` and ``http://HOST:PORT/<exchange>``; a connector whose
``base_url_ws`` / ``base_url_http`` point there runs exactly as against the venue. Each
websocket connection replays the venue's capture from its start, sending the recorded frames
verbatim once the client has subscribed, and only those of the streams it subscribed to, at
the recorded pace divided by ``speed`` (0: as fast as the socket takes them). At the end of the
capture the connection stays open (idle), or with ``loop`` is closed with 1001 "going away" -
as venues do - so the client reconnects and gets the capture again from its start.

What "subscribed", "a stream" and the REST endpoints mean is venue-specific: ``ReplayRules`` in
``services.ingest.replay_rules`` (the contract venues extend, apart from this server) is the
default (every frame once the client has sent anything; REST bodies served by path), and a venue
overrides it in ``venues/<venue>/replay.py`` (Binance: SUBSCRIBE frames, stream filtering, depth
snapshots of the book as it stands at the client's replay position).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from services.ingest.capture import CaptureError, Session, find_sessions
from services.ingest.replay_rules import Client, ReplayRules
from services.ingest.venues import NAMES, get
from shared.sections.ingest import VenueSettings

log = logging.getLogger(__name__)


class ReplayServer:
    """Serve captures of one or more venues on one local port."""

    def __init__(
        self,
        sessions: dict[str, list[Session]],
        *,
        speed: float = 1.0,
        loop: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        drop_after: int | None = None,
        plain_rate: float = 1000.0,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if not sessions:
            raise ValueError("the replay server needs at least one recorded session")
        self.rules = {name: get(name).replay_rules(s) for name, s in sessions.items()}
        self.sessions = sessions
        self.speed = speed
        self.loop = loop
        self.host = host
        self.port = port
        self.drop_after = drop_after  # drop each connection (no close frame) after this many frames
        self.plain_rate = plain_rate  # frames/s at speed 1 for captures without times
        self.connections: dict[str, int] = defaultdict(int)
        self.frames_sent: dict[str, int] = defaultdict(int)
        self.rest_requests: dict[str, int] = defaultdict(int)
        self.finished: dict[str, int] = defaultdict(int)  # connections whose replay reached the end
        self._clients: dict[str, list[tuple[Client, web.WebSocketResponse, web.Request]]] = defaultdict(list)
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_path(cls, path: Path, exchange: str | None = None, **kwargs: Any) -> ReplayServer:
        """Find every session under ``path`` and group them by venue."""
        by_venue: dict[str, list[Session]] = defaultdict(list)
        unsupported: set[str] = set()
        for session in find_sessions(Path(path), exchange):
            if session.venue is None:  # neither its names nor its frames' shape say (capture.sniff_venue)
                folder = session.path.parent.parent.name  # <exchange>/<recorder>/file, as in shared/data/ws
                if folder not in NAMES:
                    problem = f"{session.path}: cannot tell which exchange recorded this; pass --exchange"
                    if Path(path).is_file():
                        raise CaptureError(problem)
                    log.warning("replay: skipping %s", problem)
                    continue
                session.venue = folder
            if session.venue not in NAMES:  # a tree such as shared/data/ws holds venues Tradewind lacks
                unsupported.add(session.venue)
                continue
            by_venue[session.venue].append(session)
        if unsupported:
            log.warning(
                "replay: skipping captures of venues Tradewind does not support: %s", ", ".join(sorted(unsupported))
            )
        if not by_venue:
            raise CaptureError(f"{path}: no capture of a supported venue ({', '.join(sorted(NAMES))})")
        return cls(dict(by_venue), **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{venue}/{tail:.*}", self._handle)
        app.router.add_get("/{venue}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("replay exchange on %s:%d serving %s", self.host, self.port, ", ".join(sorted(self.rules)))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def base_urls(self, exchange: str) -> tuple[str, str]:
        """(base_url_ws, base_url_http) a connector uses to reach ``exchange`` here."""
        return f"ws://{self.host}:{self.port}/{exchange}", f"http://{self.host}:{self.port}/{exchange}"

    def venue_settings(self, exchange: str, base: VenueSettings | None = None) -> VenueSettings:
        """Settings that point ``exchange``'s connector here, subscribed to what the capture holds."""
        ws, http = self.base_urls(exchange)
        base = base or VenueSettings(base_url_ws=ws, base_url_http=http)
        settings = get(exchange).capture_settings(self.sessions[exchange], base)
        return settings.model_copy(update={"base_url_ws": ws, "base_url_http": http, "enabled": True})

    def drop_connections(self, exchange: str | None = None) -> int:
        """Cut every websocket (of ``exchange``) without a close frame, as a network failure would."""
        n = 0
        for venue, clients in self._clients.items():
            if exchange in (None, venue):
                for _, _, request in clients:
                    if request.transport is not None:
                        request.transport.abort()
                        n += 1
        return n

    # -- requests ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        venue = request.match_info["venue"]
        rules = self.rules.get(venue)
        if rules is None:
            return web.json_response({"error": f"no capture of {venue!r} here; have {sorted(self.rules)}"}, status=404)
        tail = "/" + request.match_info.get("tail", "")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(venue, rules, tail, request)
        self.rest_requests[venue] += 1
        clients = self._clients.get(venue) or []
        status, body = rules.rest(tail, dict(request.query), clients[-1][0] if clients else None)
        return web.Response(status=status, text=body, content_type="application/json")

    async def _websocket(self, venue: str, rules: ReplayRules, tail: str, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=2**20)
        await ws.prepare(request)
        self.connections[venue] += 1
        client = Client(self.connections[venue], tail, dict(request.query))
        rules.new_client(client)
        entry = (client, ws, request)
        self._clients[venue].append(entry)
        reader = asyncio.create_task(self._read_client(rules, client, ws))
        try:
            await client.ready.wait()
            await self._replay(venue, rules, client, ws, request)
            if not self.loop:
                await reader  # idle until the client goes away
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            reader.cancel()
            self._clients[venue].remove(entry)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close(code=1001, message=b"replay finished")
        return ws

    async def _read_client(self, rules: ReplayRules, client: Client, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                async with client.lock:
                    for reply in rules.on_client_frame(client, msg.data):
                        await ws.send_str(reply)
            elif msg.type == WSMsgType.ERROR:
                return

    async def _replay(
        self, venue: str, rules: ReplayRules, client: Client, ws: web.WebSocketResponse, request: web.Request
    ) -> None:
        records = rules.timeline
        first = next((r.ts for r in records if r.ts is not None), 0)
        speed = self.speed
        started = time.monotonic()
        untimed = 0
        for record in records:
            if record.ts is not None:
                client.position_ns = record.ts
                due = (record.ts - first) / 1e9 / speed if speed else 0.0
            else:
                untimed += 1
                due = untimed / self.plain_rate / speed if speed else 0.0
            if speed:
                wait = due - (time.monotonic() - started)
                if wait > 0.001:
                    await asyncio.sleep(wait)
            async with client.lock:
                rules.observe(client, record)
                if record.kind != "frame" or not rules.wants(client, record):
                    continue
                if ws.closed:
                    return
                await ws.send_str(rules.render(client, record))
            client.sent += 1
            self.frames_sent[venue] += 1
            if not speed and client.sent % 256 == 0:
                await asyncio.sleep(0)  # let the client's frames (and other connections) through
            if self.drop_after is not None and client.sent >= self.drop_after and client.number == 1:
                log.info("replay: dropping %s connection %d after %d frames", venue, client.number, client.sent)
                if request.transport is not None:
                    request.transport.abort()
                return
        self.finished[venue] += 1
        log.info("replay: %s connection %d reached the end (%d frames sent)", venue, client.number, client.sent)


async def serve(path: Path, exchange: str | None, speed: float, loop: bool, host: str, port: int,
                drop_after: int | None = None) -> None:  # fmt: skip
    """Run the replay exchange until cancelled, printing where each venue is served."""
    server = ReplayServer.from_path(path, exchange, speed=speed, loop=loop, host=host, port=port, drop_after=drop_after)
    async with server:
        for venue in sorted(server.rules):
            ws, http = server.base_urls(venue)
            n = sum(len(s.records) for s in server.sessions[venue])
            print(f"{venue}: base_url_ws={ws} base_url_http={http} ({n} records)", flush=True)
        await asyncio.Event().wait()
