"""Read recorded exchange sessions: plain, cryptofeed recorder and hftbacktest formats, `.gz` or not.

Every line of every format is one record, so a line is classified on its own and the format is
never guessed for a whole file:

===============================================  =======================================
line                                             record
===============================================  =======================================
``configuration: {...}``                         ``config`` (cryptofeed: what was subscribed)
``<url> <-> <unix_ts>``                          ``open`` (a websocket connection opened)
``<url> <- <unix_ts>: <payload>``                ``sent`` (a frame the client sent)
``<url> -> <unix_ts>: <body>``                   ``rest`` (a REST response body)
``<unix_ts>: <payload>``                         ``frame`` (cryptofeed: a received frame)
``<19-digit ns> <payload>``                      ``frame`` (hftbacktest)
anything else, e.g. ``{...}``                    ``frame`` (plain: one raw frame per line, no time)
===============================================  =======================================

A file whose first line is ``<13-digit ms> order_created|...|trade|order_book {...}`` is Bitstamp's
2015 Level 3 log (obAnalytics' recorder), read by ``l3log`` as v2 traffic.

A *session* is what one recording run produced: for cryptofeed the ``<EX>.0`` start-up file
(market list), the ``<EX>.http.N.0`` REST snapshots and the ``<EX>.ws.N.0`` connections, merged
in time order; for hftbacktest the files of one folder in name order (they roll at 00:00 UTC).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from services.ingest import l3log
from services.ingest.records import CaptureError, Record, RecordKind, Session, open_text

_URL_LINE = re.compile(r"^(\w+://\S+) (<->|<-|->) (\d+(?:\.\d+)?)(?:: ?(.*))?$", re.S)
_TS_LINE = re.compile(r"^(\d{9,11}\.\d*|\d{9,11}): ?(.*)$", re.S)
_NS_LINE = re.compile(r"^(\d{16,20}) (.*)$", re.S)

# cryptofeed's exchange ids -> Tradewind's exchange names, where they differ by more than case.
_CRYPTOFEED_NAMES = {"COINBASE": "coinbase", "BINANCE_FUTURES": "binance_futures", "BINANCE_US": "binance_us"}
# hftbacktest's file prefixes (examples/<market>/...) -> exchange names.
_HFT_PREFIXES = {"spot": "binance", "usdm": "binance_futures", "cm": "binance_delivery"}


def parse_line(text: str, line: int = 0, source: str = "", conn: int = 0) -> Record | None:
    """Classify one line; None for a blank one."""
    text = text.rstrip("\r\n")
    if not text.strip():
        return None
    if text.startswith("configuration: "):
        return Record("config", text[len("configuration: ") :], None, "", line, source, conn)
    if "://" in text[:16]:
        m = _URL_LINE.match(text)
        if m:
            url, arrow, ts, payload = m.groups()
            kind: RecordKind = "open" if arrow == "<->" else "sent" if arrow == "<-" else "rest"
            return Record(kind, payload or "", _seconds_to_ns(ts), url, line, source, conn)
    first = text[0]
    if first.isdigit():
        m = _NS_LINE.match(text)
        if m:
            return Record("frame", m.group(2), int(m.group(1)), "", line, source, conn)
        m = _TS_LINE.match(text)
        if m:
            return Record("frame", m.group(2), _seconds_to_ns(m.group(1)), "", line, source, conn)
    return Record("frame", text, None, "", line, source, conn)


def _seconds_to_ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def read_records(path: Path, conn: int = 0) -> Iterator[Record]:
    """Every record of one file, in file order."""
    source = path.name
    for number, text in enumerate(open_text(path), 1):
        record = parse_line(text, number, source, conn)
        if record is not None:
            yield record


def _stem(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


_CF_WS = re.compile(r"^(?P<ex>[A-Z0-9_.]+)\.ws\.(?P<n>\d+)\.0$")
_CF_HTTP = re.compile(r"^(?P<ex>[A-Z0-9_.]+)\.http\.(?P<n>\d+)\.0$")
_CF_START = re.compile(r"^(?P<ex>[A-Z0-9_.]+)\.0$")
_CF_SINGLE = re.compile(r"^(?P<ex>[A-Z0-9_.]+)-[0-9a-f]{6}\.0$")


def cryptofeed_venue(exchange_id: str) -> str:
    return _CRYPTOFEED_NAMES.get(exchange_id, exchange_id.lower().replace(".", "_"))


def _merge(parts: list[list[Record]]) -> list[Record]:
    keyed: list[tuple[int, Record]] = []
    for part in parts:
        last = -1  # a record without a time (configuration line, plain frame) sorts with the one before it
        for r in part:
            last = r.ts if r.ts is not None else last
            keyed.append((last, r))
    keyed.sort(key=lambda kr: kr[0])  # stable: ties keep file order
    return [r for _, r in keyed]


def load_session(path: Path, venue: str | None = None) -> Session:
    """Load the session a file belongs to (cryptofeed siblings included) or a session folder."""
    path = Path(path)
    if not path.exists():
        raise CaptureError(f"{path}: no such file or folder")
    if path.is_dir():
        sessions = find_sessions(path, venue)
        if len(sessions) != 1:
            raise CaptureError(f"{path}: expected one recorded session here, found {len(sessions)}")
        return sessions[0]
    stem = _stem(path)
    for pattern in (_CF_WS, _CF_HTTP, _CF_START):
        m = pattern.match(stem)
        if m:
            return _cryptofeed_session(path.parent, m.group("ex"), venue, only_ws=path if pattern is _CF_WS else None)
    m = _CF_SINGLE.match(stem)
    if m:
        return Session(venue or cryptofeed_venue(m.group("ex")), path, list(read_records(path)))
    if l3log.is_l3_log(next(open_text(path), "")):  # the generator (and file) ends with this line
        return l3log.session(path, venue)
    records = list(read_records(path))
    return Session(venue or _hft_venue(path) or sniff_venue(records), path, records)


def _hft_venue(path: Path) -> str | None:
    if path.parent.name == "hftbacktest":
        return path.parent.parent.name
    prefix = path.name.split("_", 1)[0]
    return _HFT_PREFIXES.get(prefix)


def _frame_venue(data: str) -> str | None:
    """The venue whose public websocket API sends frames shaped like ``data`` (None: can't say).

    Binance.US sends Binance's frames (reported as ``binance``); USD-M futures depth has ``pu``.
    """
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    if isinstance(obj, list):  # Kraken v1 [id, ..., "book-10", "XBT/USD"]; Bitfinex v2 [chanId, ...]
        if len(obj) >= 4 and isinstance(obj[-1], str) and "/" in obj[-1] and isinstance(obj[-2], str):
            return "kraken"
        return "bitfinex" if len(obj) >= 2 and type(obj[0]) is int and isinstance(obj[1], (list, str)) else None
    if not isinstance(obj, dict):
        return None
    inner = obj.get("data")
    if (isinstance(obj.get("stream"), str) and isinstance(inner, dict)) or "lastUpdateId" in obj or "e" in obj:
        event = inner if isinstance(inner, dict) else obj
        return "binance_futures" if "pu" in event else "binance"
    if isinstance(obj.get("topic"), str):
        return "bybit"
    if isinstance(obj.get("arg"), dict):
        return "okx"
    if "product_id" in obj or obj.get("type") == "subscriptions":
        return "coinbase"
    if isinstance(obj.get("type"), str) and ("symbol" in obj or obj.get("type") == "heartbeat"):
        return "gemini"
    name = obj.get("event")
    if isinstance(name, str) and (name.startswith("bts:") or (isinstance(obj.get("channel"), str) and "data" in obj)):
        return "bitstamp"
    if name in ("systemStatus", "subscriptionStatus") or "connectionID" in obj:
        return "kraken"
    if (name == "info" and obj.get("version") == 2) or (name == "subscribed" and "chanId" in obj):
        return "bitfinex"
    return None


def sniff_venue(records: Iterable[Record], frames: int = 50) -> str | None:
    """The venue of a capture whose names don't say, from the shape of its first ``frames`` frames:
    the one they all point to (Binance family: futures if any frame is a futures one), else None."""
    votes: Counter[str] = Counter()
    for record in records:
        if record.kind != "frame":
            continue
        venue = _frame_venue(record.data)
        if venue is not None:
            votes[venue] += 1
        frames -= 1
        if frames <= 0:
            break
    if set(votes) == {"binance", "binance_futures"}:
        return "binance_futures"
    return next(iter(votes)) if len(votes) == 1 else None


def _cryptofeed_session(folder: Path, ex: str, venue: str | None, only_ws: Path | None = None) -> Session:
    parts: list[list[Record]] = []
    files = sorted(folder.iterdir())
    for f in files:
        stem = _stem(f)
        m = _CF_WS.match(stem) or _CF_HTTP.match(stem) or _CF_START.match(stem)
        if not m or m.group("ex") != ex:
            continue
        if only_ws is not None and _CF_WS.match(stem) and f != only_ws:
            continue
        conn = int(m.group("n")) if "n" in m.groupdict() else 0
        parts.append(list(read_records(f, conn)))
    return Session(venue or cryptofeed_venue(ex), folder, _merge(parts))


def find_sessions(root: Path, venue: str | None = None) -> list[Session]:
    """Every session under ``root`` (a file, a session folder, or a tree of them), in path order."""
    root = Path(root)
    if root.is_file():
        return [load_session(root, venue)]
    if not root.is_dir():
        raise CaptureError(f"{root}: no such file or folder")
    sessions: list[Session] = []
    for folder in sorted({root, *(p for p in root.rglob("*") if p.is_dir())}):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.lower().startswith("readme"))
        stems = {_stem(f): f for f in files}
        done: set[Path] = set()
        for ex in sorted({m.group("ex") for s in stems if (m := _CF_WS.match(s))}):
            session = _cryptofeed_session(folder, ex, venue)
            sessions.append(session)
            done.update(f for s, f in stems.items() if s.startswith(ex + "."))
        rest = [f for f in files if f not in done and not f.name.endswith((".json", ".md", ".txt", ".py"))]
        if folder.name == "hftbacktest" and rest:
            parts = [list(read_records(f)) for f in rest]
            sessions.append(Session(venue or _hft_venue(rest[0]), folder, [r for p in parts for r in p]))
            continue
        for f in rest:
            stem = _stem(f)
            if _CF_START.match(stem) or _CF_HTTP.match(stem):
                continue  # start-up files of a session without websocket files
            sessions.append(load_session(f, venue))
    return sessions


def config_of(session: Session) -> dict[str, list[str]]:
    """The cryptofeed ``configuration:`` line of a session, if it has one."""
    for record in session.records:
        if record.kind == "config":
            try:
                value = json.loads(record.data)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}
