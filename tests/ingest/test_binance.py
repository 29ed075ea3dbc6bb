"""Every recorded Binance-family session, through the production connector over a real local
websocket (the replay exchange), into Redis: trades equal `tradewind normalize` of the same
capture, and the book equals one rebuilt independently from the raw snapshot and diffs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from shared.cli import cli
from shared.schemas import BookUpdate, Trade, streams
from tests.ingest.helpers import (
    SESSIONS,
    book_from_messages,
    rebuild_books,
    replay_through_connector,
    statuses,
    trade_key,
)

pytestmark = pytest.mark.integration


def normalized(exchange: str, path) -> list[dict]:
    result = CliRunner().invoke(cli, ["normalize", "--exchange", exchange, str(path)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize(("exchange", "path"), SESSIONS, ids=[f"{e}-{p.name}" for e, p in SESSIONS])
async def test_recorded_session_through_connector(redis, exchange, path):
    run = await replay_through_connector(redis, exchange, path)
    trades = run.of(streams.md_trades(exchange), Trade)
    books = run.of(streams.md_book(exchange), BookUpdate)
    expected = normalized(exchange, path)

    # Trades on Redis are exactly the normalizer's, in order (receive times aside).
    assert [trade_key(t) for t in trades] == [trade_key(m) for m in expected if m["type"] == "trade"]
    assert trades, "every recorded session here has trades"
    assert all("/" in t.symbol for t in trades)

    # Books: no gap in these captures, each symbol starts with a snapshot.
    assert not [s for s in statuses(run) if s.state == "gap"]
    futures = exchange == "binance_futures"
    rebuilt = rebuild_books(path, futures)
    assert rebuilt, "every session here has a REST snapshot and depth diffs"
    feed = run.connectors[0].feed
    for venue_symbol, (bids, asks) in rebuilt.items():
        symbol = feed.symbols.unified(venue_symbol)
        assert symbol is not None
        own = feed.books[symbol]
        assert own.bids == bids and own.asks == asks, f"{symbol}: connector's book differs from the rebuild"
        assert not own.crossed()
        assert book_from_messages(books, symbol) == (bids, asks), f"{symbol}: md:book does not rebuild the book"
        first = next(b for b in books if b.symbol == symbol)
        assert first.snapshot
    assert sum(c.feed.errors.total for c in run.connectors) == 0
    assert [m["type"] for m in expected if m["type"] == "book"].count("book") == len(books)
