"""The day-long Bitstamp sample (2015 Level 3 log, samples/bitstamp-day/) served as v2 traffic:
replayed through the production Bitstamp connector over real websockets, and read by
`tradewind normalize`, both compared with an independent reading of the file written plainly
here (orders by id, levels from the first top-20 snapshot), sharing no code with services.ingest."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from services.ingest.capture import find_sessions
from shared.samples import DAY_FILE, SampleMissing, day_sample
from shared.schemas import Trade, streams
from tests.ingest.helpers import replay_through_connector, statuses, trade_key
from tests.ingest.venue_checks import check_recorded_session, normalized

ROOT = Path(__file__).resolve().parents[2]
DAY = ROOT / "samples" / "bitstamp-day" / DAY_FILE
Book = tuple[dict[float, float], dict[float, float]]


def prefix(tmp_path: Path, minutes: float) -> tuple[Path, list[str]]:
    """The log's first ``minutes``, cut just after a top-20 snapshot line, as a file of its own."""
    lines: list[str] = []
    with gzip.open(DAY, "rt") as fh:
        for line in fh:
            if lines and int(line[:13]) - int(lines[0][:13]) >= minutes * 60_000:
                break
            lines.append(line.rstrip("\n"))
    end = max(i for i, line in enumerate(lines) if " order_book " in line)
    kept = lines[: end + 1]
    path = tmp_path / "bitstamp_btcusd_prefix.log.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(kept) + "\n")
    return path, kept


def events(lines: list[str]) -> list[tuple[int, str, dict]]:
    out = []
    for line in lines:
        ms, kind, payload = line.split(" ", 2)
        out.append((int(ms), kind, json.loads(payload)))
    return out


def independent_book(lines: list[str]) -> Book:
    """Orders tracked by id from the first line; levels from the first top-20 snapshot (the orders
    known then are part of its amounts); an order older than the log moves its level only when
    cancelled with an amount left; a book crossed for 1 s or more loses the crossed levels of the
    side whose newest order there is the older (unknown orders: oldest). Amounts in satoshi,
    prices in cents, converted at the end."""
    orders: dict[int, tuple[int, int, int]] = {}
    levels: tuple[dict[int, int], dict[int, int]] | None = None
    crossed_since: int | None = None

    def crossed() -> bool:
        return levels is not None and bool(levels[0] and levels[1]) and max(levels[0]) >= min(levels[1])

    def cents(text: str) -> int:
        return round(float(text) * 100)

    def sats(text: str) -> int:
        return round(float(text) * 100_000_000)

    def move(side: int, price: int, delta: int) -> None:
        if levels is not None:
            levels[side][price] = levels[side].get(price, 0) + delta
            if levels[side][price] <= 0:
                del levels[side][price]

    for ms, kind, d in events(lines):
        if kind == "order_book":
            if levels is None:
                levels = ({cents(p): sats(a) for p, a in d["bids"]}, {cents(p): sats(a) for p, a in d["asks"]})
                orders = {i: o for i, o in orders.items() if o[1] in levels[o[0]]}
            continue
        if kind == "trade":
            continue
        oid, side, price, amount = d["id"], d["order_type"], cents(d["price"]), sats(d["amount"])
        if kind == "order_created":
            orders[oid] = (side, price, amount)
            move(side, price, amount)
        elif oid in orders:
            old_side, old_price, old_amount = orders.pop(oid)
            move(old_side, old_price, -old_amount)
            if kind == "order_changed":
                orders[oid] = (old_side, price, amount)
                move(old_side, price, amount)
        elif kind == "order_deleted" and levels is not None and price in levels[side]:
            move(side, price, -min(amount, levels[side][price]))
        if not crossed():
            crossed_since = None
            continue
        crossed_since = ms if crossed_since is None else crossed_since
        if ms - crossed_since < 1000:
            continue
        crossed_since = None
        while crossed():
            assert levels is not None
            best_bid, best_ask = max(levels[0]), min(levels[1])
            cross = ({p for p in levels[0] if p >= best_ask}, {p for p in levels[1] if p <= best_bid})
            newest = [max([i for i, o in orders.items() if o[0] == s and o[1] in cross[s]], default=0) for s in (0, 1)]
            stale = 0 if newest[0] < newest[1] else 1
            orders = {i: o for i, o in orders.items() if not (o[0] == stale and o[1] in cross[stale])}
            for p in cross[stale]:
                del levels[stale][p]
    assert levels is not None
    return (
        {c / 100: s / 100_000_000 for c, s in levels[0].items()},
        {c / 100: s / 100_000_000 for c, s in levels[1].items()},
    )


@pytest.mark.integration
async def test_first_minutes_through_the_connector_match_the_file(redis, tmp_path):
    path, lines = prefix(tmp_path, 10)
    bids, asks = independent_book(lines)
    assert max(bids) < min(asks), "the independent book is uncrossed at the end of the prefix"
    # Connector (over the replay exchange's websocket + REST) == normalize == the independent book.
    run = await check_recorded_session(redis, "bitstamp", path, {"btcusd": (bids, asks)}, min_trades=20)
    # Every recorded trade, in order, with its id, price, amount and local receive time.
    recorded = [(ms, d) for ms, kind, d in events(lines) if kind == "trade"]
    published = run.of(streams.md_trades("bitstamp"), Trade)
    assert [(t.trade_id, t.price, t.amount, t.ts) for t in published] == [
        (str(d["id"]), round(d["price"], 2), round(d["amount"], 8), ms * 1_000_000) for ms, d in recorded
    ]
    assert {t.side for t in published} == {"buy", "sell"}
    # The book rebuilt from the order events agrees with the top-20 snapshot recorded at the end.
    last = json.loads(lines[-1].split(" ", 2)[2])
    own = run.connectors[0].feed.books["BTC/USD"]
    assert (max(own.bids), min(own.asks)) == (float(last["bids"][0][0]), float(last["asks"][0][0]))


def test_trade_sides_follow_the_orders_they_consumed(tmp_path):
    """A trade's taker bought when the oldest order filled or reduced at its price just before it
    was an ask (and sold when a bid), for the trades where the log shows that order."""
    path, lines = prefix(tmp_path, 5)
    assert find_sessions(path)[0].venue == "bitstamp"  # told by the file's first line, no --exchange
    sides = {m["trade_id"]: m["side"] for m in normalized("bitstamp", path) if m["type"] == "trade"}
    checked = 0
    consumed: list[tuple[int, int, int, float]] = []  # (ms, id, order_type, price)
    for ms, kind, d in events(lines):
        if kind == "order_changed" or (kind == "order_deleted" and float(d["amount"]) == 0):
            consumed.append((ms, d["id"], d["order_type"], float(d["price"])))
        elif kind == "trade":
            makers = [c for c in consumed if c[3] == round(d["price"], 2) and c[0] >= ms - 3000]
            if makers:
                maker = min(makers, key=lambda c: c[1])
                consumed.remove(maker)
                assert sides[str(d["id"])] == ("buy" if maker[2] == 1 else "sell"), d
                checked += 1
    assert checked >= 10 and checked >= 0.9 * len(sides), (checked, len(sides))


def test_the_day_sample_is_found_in_the_checkout_and_named_when_absent(tmp_path):
    assert day_sample() == DAY.parent
    assert (DAY.parent / "LICENSE.txt").read_text().count("GNU GENERAL PUBLIC LICENSE") >= 1
    with pytest.raises(SampleMissing) as missing:
        day_sample((tmp_path,))
    message = str(missing.value)
    assert f"samples/bitstamp-day/{DAY_FILE}" in message and "TRADEWIND_INGEST__REPLAY__DATA" in message
    assert str(tmp_path) in message and "GPL" in message


@pytest.mark.slow
def test_the_whole_day_through_normalize_matches_the_file():
    with gzip.open(DAY, "rt") as fh:
        lines = fh.read().splitlines()
    messages = normalized("bitstamp", DAY)
    trades = [m for m in messages if m["type"] == "trade"]
    recorded = [(ms, d) for ms, kind, d in events(lines) if kind == "trade"]
    assert len(trades) == len(recorded) == 4251
    assert [(t["trade_id"], t["price"], t["amount"]) for t in trades] == [
        (str(d["id"]), round(d["price"], 2), round(d["amount"], 8)) for _, d in recorded
    ]
    assert [m for m in messages if m["type"] == "status"] == []
    books = [m for m in messages if m["type"] == "book"]
    assert books[0].get("snapshot") and not any(b.get("snapshot") for b in books[1:])


@pytest.mark.slow
@pytest.mark.integration
async def test_an_hour_through_the_connector_at_full_speed(redis, tmp_path):
    path, lines = prefix(tmp_path, 60)
    run = await replay_through_connector(redis, "bitstamp", path, timeout=240)
    assert [s for s in statuses(run) if s.state == "gap"] == []
    recorded = [d for _, kind, d in events(lines) if kind == "trade"]
    assert [trade_key(t)[2] for t in run.of(streams.md_trades("bitstamp"), Trade)] == [str(d["id"]) for d in recorded]
    own = run.connectors[0].feed.books["BTC/USD"]
    assert max(own.bids) < min(own.asks)


def test_up_with_the_day_sample_absent_names_the_path_and_exits_2(monkeypatch):
    from click.testing import CliRunner

    from shared.cli import cli

    monkeypatch.delenv("TRADEWIND_INGEST__REPLAY__SAMPLE", raising=False)  # --sample sets it; restored after
    monkeypatch.delenv("TRADEWIND_INGEST__REPLAY__DATA", raising=False)
    monkeypatch.setattr("shared.samples.DAY_FILE", "not-here.log.gz")  # as in an installed wheel
    result = CliRunner().invoke(cli, ["up", "--mode", "replay", "--sample", "day", "--duration", "1"])
    assert result.exit_code == 2, result.output
    assert "samples/bitstamp-day/not-here.log.gz not found" in result.output
    assert "TRADEWIND_INGEST__REPLAY__DATA" in result.output


def test_the_log_reader_serves_the_market_list_where_the_bitstamp_venue_looks():
    """l3log sits below the venue packages, so it spells the venue's constants itself: keep them equal."""
    from services.ingest import l3log
    from services.ingest.venues.bitstamp import config

    assert l3log.MARKETS_PATH == config.MARKETS_PATH
    assert l3log.MARKETS_LIST.name == config.MARKETS_FILE and l3log.MARKETS_LIST.is_file()


def test_the_day_sample_points_the_trainer_executor_and_risk_at_bitstamp_unless_told_otherwise():
    from shared.config import Settings

    day = Settings(mode="replay", ingest={"replay": {"sample": "day"}}, trainer={"interval_s": 300.0})
    assert day.trainer.venues == ["bitstamp"] and day.trainer.symbol == "BTC/USD"
    assert day.trainer.bar_seconds == 60.0 and day.trainer.bar_clock == "exchange"
    assert day.trainer.interval_s == 300.0  # set explicitly: kept
    assert day.executor.market_data_venues == ["bitstamp"] and day.risk.market_data_venues == ["bitstamp"]
    # a capture of one's own (REPLAY__DATA) or the default sample: the defaults stay
    own = Settings(mode="replay", ingest={"replay": {"sample": "day", "data": str(DAY)}})
    assert own.trainer.venues is None and "binance" in own.risk.market_data_venues
    assert Settings(mode="replay").trainer.venues is None
