"""Bitstamp's 2015 Level 3 log (obAnalytics' recorder) re-encoded as today's Bitstamp v2 traffic.

The log has one event per line, ``<local receive ms> <event> <payload JSON>``: ``order_created`` /
``order_changed`` / ``order_deleted`` (one order: id, price, remaining amount, ``order_type`` 0 bid
1 ask), ``trade`` (price, amount, id; no side) and ``order_book`` (top-20 snapshots). Those are
Pusher-era payloads; Tradewind's Bitstamp connector speaks v2. ``session`` turns the file into a
capture of v2 traffic, event for event, that the replay exchange serves and ``normalize`` reads
like any other:

- ``GET /api/v2/trading-pairs-info/``: BTC/USD from the list shipped with Tradewind (the log has none).
- ``GET /api/v2/order_book/btcusd`` answers with the first recorded top-20 snapshot (the log has
  no full book). Orders are tracked by id from the first line; the book's levels start at that
  snapshot, holding its amounts (orders known then are part of them).
- ``diff_order_book_btcusd``: every order event updates the Level 3 book; the price levels whose
  total changed go out in one diff per local millisecond (``microtimestamp`` = that ms, plus one
  per further diff in the same ms so they stay strictly increasing). An order the log never
  created (it rested before the recording began) moves its level only when it is cancelled with an
  amount left, by that amount. A book left crossed for ``STALE_MS`` holds orders whose fill or
  delete the log missed: ``L3Book.drop_stale`` drops the older side's crossed levels.
- ``live_trades_btcusd``: each trade, ``type`` (0 the taker bought, 1 sold) from ``infer_side``.

Times are the recorder's local receive times (the exchange's own are whole seconds).
"""

from __future__ import annotations

import gzip
import logging
import re
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from services.ingest.records import Record, Session, open_text

log = logging.getLogger(__name__)

# The Bitstamp venue's own constants (venues/bitstamp/config.py; a test keeps them equal): this reader sits
# below the venue packages, which import capture.py, which reads this format.
MARKETS_PATH = "/api/v2/trading-pairs-info/"
MARKETS_LIST = Path(__file__).parent / "venues" / "bitstamp" / "markets" / "bitstamp_trading-pairs-info.json.gz"
PAIR = "btcusd"
SNAPSHOT_URL = "https://www.bitstamp.net/api/v2/order_book/" + PAIR  # what the connector asks for
MARKETS_URL = "https://www.bitstamp.net" + MARKETS_PATH
_LINE = re.compile(r"^(\d{13}) (order_created|order_changed|order_deleted|trade|order_book) \{")
BID, ASK = 0, 1
SAT = 100_000_000
SIDE_WINDOW_MS = 3_000  # consumed orders this recent can be a trade's maker
STALE_MS = 1_000  # a book crossed this long holds stale orders (see L3Book.drop_stale)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def is_l3_log(first_line: str) -> bool:
    """True for a line of this format (the format is told by a file's first line)."""
    return _LINE.match(first_line) is not None


def cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def sats(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * SAT + int((frac + "00000000")[:8])


def price_text(c: int) -> str:
    return f"{c // 100}.{c % 100:02d}"


def amount_text(s: int) -> str:
    return f"{s // SAT}.{s % SAT:08d}"


class L3Book:
    """Orders by id and the price levels they add up to (amounts in satoshi, prices in cents).

    Each side keeps its prices sorted (``bisect``), so the touch and the levels a new order
    crosses cost O(log n), not a scan of the book per event.
    """

    def __init__(self) -> None:
        self.orders: dict[int, tuple[int, int, int]] = {}  # id -> (side, cents, sats)
        self.levels: tuple[dict[int, int], dict[int, int]] = ({}, {})  # side -> cents -> sats
        self.prices: tuple[list[int], list[int]] = ([], [])  # side -> sorted cents
        self.held: tuple[Counter[int], Counter[int]] = (Counter(), Counter())  # known orders per level
        self.seeded = False
        self.crossed_since: int | None = None  # recorded ms since which the book is crossed
        self.stats: Counter[str] = Counter()

    def seed(self, snapshot: dict[str, list[list[str]]]) -> None:
        """Levels from a top-N snapshot; the orders known then stay known where their level is in it."""
        for side, key in ((BID, "bids"), (ASK, "asks")):
            self.levels[side].update((cents(p), sats(a)) for p, a in snapshot[key] if sats(a))
            self.prices[side][:] = sorted(self.levels[side])
        self.orders = {i: o for i, o in self.orders.items() if o[1] in self.levels[o[0]]}
        self.held = (Counter(), Counter())
        for side, price, _ in self.orders.values():
            self.held[side][price] += 1
        self.seeded = True

    def best(self, side: int) -> int | None:
        prices = self.prices[side]
        if not prices:
            return None
        return prices[-1] if side == BID else prices[0]

    def apply(self, event: str, order: dict[str, object], changed: set[tuple[int, int]]) -> None:
        """Apply one order event; add the (side, price) of each level it changed to ``changed``."""
        oid, side = int(order["id"]), int(order["order_type"])  # type: ignore[call-overload]
        price, amount = cents(str(order["price"])), sats(str(order["amount"]))
        known = self.orders.get(oid)
        if event == "order_created":
            self.orders[oid] = (side, price, amount)
            self.held[side][price] += 1
            self._add(side, price, amount, changed)
        elif known is not None:  # a change may move the order to another price
            self.held[known[0]][known[1]] -= 1
            self._add(known[0], known[1], -known[2], changed)
            if event == "order_changed":
                self.orders[oid] = (known[0], price, amount)
                self.held[known[0]][price] += 1
                self._add(known[0], price, amount, changed)
            else:
                del self.orders[oid]
        elif event == "order_deleted" and amount and price in self.levels[side]:
            self.stats["cancels of orders older than the log"] += 1
            self._add(side, price, -min(amount, self.levels[side][price]), changed)
        else:
            self.stats[f"{event} of an order the book does not hold"] += 1

    def _add(self, side: int, price: int, delta: int, changed: set[tuple[int, int]]) -> None:
        if not self.seeded or not delta:
            return
        level, prices = self.levels[side], self.prices[side]
        before = level.get(price, 0)
        total = before + delta
        if total > 0:
            level[price] = total
            if not before:
                insort(prices, price)
        else:
            level.pop(price, None)
            if before:
                del prices[bisect_left(prices, price)]
        changed.add((side, price))

    def crossed(self) -> bool:
        bid, ask = self.best(BID), self.best(ASK)
        return bid is not None and ask is not None and bid >= ask

    def drop_stale(self, ms: int, changed: set[tuple[int, int]]) -> None:
        """Uncross a book that has stayed crossed for ``STALE_MS``: a taker and the makers it fills
        cross it for milliseconds, longer means orders whose fill or delete the log missed. Of the
        levels in the cross, the side whose newest order is the older (an order resting before the
        log began counts as oldest) is stale: those levels go, with their orders."""
        if not self.crossed():
            self.crossed_since = None
            return
        if self.crossed_since is None:
            self.crossed_since = ms
        if ms - self.crossed_since < STALE_MS:
            return
        while self.crossed():
            bid, ask = self.best(BID), self.best(ASK)
            assert bid is not None and ask is not None
            cross = (
                {p for p in self.prices[BID][bisect_left(self.prices[BID], ask) :]},
                {p for p in self.prices[ASK][: bisect_right(self.prices[ASK], bid)]},
            )
            newest = [0, 0]
            for oid, (side, price, _) in self.orders.items():
                if price in cross[side]:
                    newest[side] = max(newest[side], oid)
            stale = BID if newest[BID] < newest[ASK] else ASK
            for oid in [i for i, o in self.orders.items() if o[0] == stale and o[1] in cross[stale]]:
                side, price, _ = self.orders.pop(oid)
                self.held[side][price] -= 1
                self.stats["stale orders dropped"] += 1
            for price in cross[stale]:
                self._add(stale, price, -self.levels[stale][price], changed)
                self.stats["stale levels dropped"] += 1
        self.crossed_since = None


class Reencoder:
    """The log's lines -> v2 capture records (REST snapshot, diffs, trades), in recorded order."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.book = L3Book()
        self.recent: list[tuple[int, int, int, int]] = []  # consumed orders: (ms, id, side, cents)
        self.touch: tuple[int | None, int | None] = (None, None)  # before the events since the last trade
        self.fresh = True  # no order event since the last trade
        self.last_mt = 0
        self.stats: Counter[str] = Counter()

    def records(self, lines: Iterable[str]) -> Iterator[Record]:
        changed: set[tuple[int, int]] = set()
        group = (0, 0)  # (ms, line) of the order events not yet sent as a diff
        for number, line in enumerate(lines, 1):
            m = _LINE.match(line)
            if m is None:
                if line.strip():
                    self.stats["unreadable lines"] += 1
                continue
            ms, event, payload = int(m.group(1)), m.group(2), line[m.end() - 1 :]
            if changed and (ms != group[0] or not event.startswith("order_")):
                yield self._diff(group[0], group[1], changed)
                changed = set()
            if event == "order_book":
                if not self.book.seeded:
                    yield self._snapshot(ms, number, _decode(payload))
                continue
            data = _decode(payload)
            if event == "trade":
                yield self._trade(ms, number, data)
                continue
            if self.fresh:
                self.touch, self.fresh = (self.book.best(BID), self.book.best(ASK)), False
            if event == "order_changed" or (event == "order_deleted" and not sats(data["amount"])):
                self.recent.append((ms, int(data["id"]), int(data["order_type"]), cents(data["price"])))
            self.book.apply(event, data, changed)
            self.book.drop_stale(ms, changed)
            group = (ms, number)
        if changed:
            yield self._diff(group[0], group[1], changed)
        self.stats.update(self.book.stats)

    def _snapshot(self, ms: int, line: int, snap: dict[str, list[list[str]]]) -> Record:
        self.book.seed(snap)
        self.last_mt = ms * 1000
        body = {
            "timestamp": str(ms // 1000),
            "microtimestamp": str(ms * 1000),
            "bids": snap["bids"],
            "asks": snap["asks"],
        }
        return Record("rest", _encode(body).decode(), ms * 1_000_000, SNAPSHOT_URL, line, self.source)

    def _diff(self, ms: int, line: int, changed: set[tuple[int, int]]) -> Record:
        self.last_mt = mt = max(ms * 1000, self.last_mt + 1)
        sides: tuple[list[list[str]], list[list[str]]] = ([], [])
        for side, price in sorted(changed):
            sides[side].append([price_text(price), amount_text(self.book.levels[side].get(price, 0))])
        data = {"timestamp": str(ms // 1000), "microtimestamp": str(mt), "bids": sides[BID], "asks": sides[ASK]}
        frame = {"data": data, "channel": "diff_order_book_" + PAIR, "event": "data"}
        self.stats["diffs"] += 1
        return Record("frame", _encode(frame).decode(), ms * 1_000_000, "", line, self.source)

    def _trade(self, ms: int, line: int, t: dict[str, float]) -> Record:
        price, amount = round(t["price"] * 100), round(t["amount"] * SAT)
        if self.fresh:  # no order event since the last trade: the touch is the book's now
            self.touch = (self.book.best(BID), self.book.best(ASK))
        data = {
            "id": int(t["id"]),
            "timestamp": str(ms // 1000),
            "amount": amount / SAT,
            "amount_str": amount_text(amount),
            "price": price / 100,
            "price_str": price_text(price),
            "type": self.infer_side(ms, price),
            "microtimestamp": str(ms * 1000),
        }
        self.fresh = True
        frame = {"data": data, "channel": "live_trades_" + PAIR, "event": "trade"}
        self.stats["trades"] += 1
        return Record("frame", _encode(frame).decode(), ms * 1_000_000, "", line, self.source)

    def infer_side(self, ms: int, price: int) -> int:
        """0 (the taker bought) or 1 (sold). The maker is the oldest (lowest id) order at the trade's
        price filled or reduced in the last ``SIDE_WINDOW_MS`` and not yet matched to a trade: an
        ask maker means a buyer took it. Where no such order was recorded, the touch before this
        trade's order events decides: at or above the best ask a buy, at or below the best bid a
        sell, in between the nearer of the two (ties: buy)."""
        self.recent = [r for r in self.recent if r[0] >= ms - SIDE_WINDOW_MS]
        makers = [r for r in self.recent if r[3] == price]
        if makers:
            maker = min(makers, key=lambda r: r[1])
            self.recent.remove(maker)
            self.stats["trade sides from the order consumed"] += 1
            return 0 if maker[2] == ASK else 1
        self.stats["trade sides from the touch"] += 1
        bid, ask = self.touch
        if ask is not None and price >= ask:
            return 0
        if bid is not None and price <= bid:
            return 1
        if bid is None or ask is None:
            return 0 if bid is not None else 1
        return 0 if ask - price <= price - bid else 1


def market_list() -> str:
    """The BTC/USD entry of the market list shipped with Tradewind (the log has none), served as
    ``GET /api/v2/trading-pairs-info/``."""
    data = MARKETS_LIST.read_bytes()
    pairs = _decode(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return _encode([p for p in pairs if p.get("url_symbol") == PAIR]).decode()


def reencode(path: Path) -> tuple[list[Record], Counter[str]]:
    """The log's records in v2 form, and counts of how they were made (trade sides, stale levels)."""
    encoder = Reencoder(path.name)
    records = list(encoder.records(open_text(path)))
    if records:
        records.insert(0, Record("rest", market_list(), records[0].ts, MARKETS_URL, 0, path.name))
    return records, encoder.stats


def session(path: Path, venue: str | None = None) -> Session:
    """The log at ``path`` as a Bitstamp v2 capture session (see the module docstring)."""
    records, stats = reencode(path)
    log.info("%s: Bitstamp 2015 Level 3 log re-encoded as v2 traffic: %s", path, dict(sorted(stats.items())))
    return Session(venue or "bitstamp", path, records)
