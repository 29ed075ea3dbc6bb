"""Order-book snapshots for one scan: the visible levels of each market, best first."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

MAX_PRICE = 1e12  # above any real market's price in any quote: a unit or parsing mistake
MAX_AMOUNT = 1e15


class BookFileError(ValueError):
    """A books file could not be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Book:
    """Visible levels as ``(price, amount)``: bids by descending price, asks by ascending price.

    A frozen snapshot the cycle sizer walks, unlike the live books that change under it (ingest's
    ``OrderBook``, the paper venue's ``SimBook``) and the guard's per-venue ``VenueAccount``."""

    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]

    @classmethod
    def from_levels(cls, bids: list[list[float]], asks: list[list[float]]) -> Book:
        """Sort the levels and drop empty ones (amount 0 means no level)."""
        return cls(
            tuple(sorted(((float(p), float(a)) for p, a in bids if a > 0), reverse=True)),
            tuple(sorted((float(p), float(a)) for p, a in asks if a > 0)),
        )

    @property
    def best_bid(self) -> float:
        return self.bids[0][0] if self.bids else 0.0

    @property
    def best_ask(self) -> float:
        return self.asks[0][0] if self.asks else 0.0


class _BookLine(msgspec.Struct, forbid_unknown_fields=False):
    symbol: str
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


_decoder = msgspec.json.Decoder(_BookLine)


def parse_book_line(line: str | bytes, where: str) -> tuple[str, Book]:
    """Parse one ``{"symbol", "bids", "asks"}`` line; errors name ``where`` (``file:line``)."""
    try:
        parsed = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise BookFileError(f"{where}: {exc}") from None
    if "/" not in parsed.symbol:
        raise BookFileError(f"{where}: symbol {parsed.symbol!r} is not of the form BASE/QUOTE")
    for side in ("bids", "asks"):
        for price, amount in getattr(parsed, side):
            if not price > 0 or not amount >= 0 or price == float("inf") or amount == float("inf"):
                raise BookFileError(
                    f"{where}: {side} level [{price}, {amount}] must have a positive price and an amount ≥ 0"
                )
    return parsed.symbol, Book.from_levels(parsed.bids, parsed.asks)  # type: ignore[arg-type]


def load_books(path: str | Path) -> dict[str, Book]:
    """Read a JSON-lines books file (``.gz`` allowed): one snapshot, so one line per symbol.

    A symbol given twice, a crossed book (best bid ≥ best ask), a book with no levels, and prices
    above ``MAX_PRICE`` are errors naming the line: a scan of them would report nonsense returns.
    """
    path = Path(path)
    books: dict[str, Book] = {}
    seen: dict[str, int] = {}
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                symbol, book = parse_book_line(line, where)
                if symbol in seen:
                    raise BookFileError(
                        f"{where}: {symbol} given again (first on line {seen[symbol]}); one snapshot per symbol"
                    )
                _check_book(symbol, book, where)
                seen[symbol] = lineno
                books[symbol] = book
    except EOFError:
        raise BookFileError(f"{path}: the compressed file ends early (truncated?)") from None
    except (OSError, zlib.error) as exc:
        raise BookFileError(f"{path}: cannot read books: {exc}") from None
    if not books:
        raise BookFileError(f'{path}: no books (expected JSON lines of {{"symbol", "bids", "asks"}})')
    return books


def _check_book(symbol: str, book: Book, where: str) -> None:
    if not book.bids and not book.asks:
        raise BookFileError(f"{where}: {symbol} has no levels with an amount > 0 on either side")
    for price, amount in (*book.bids, *book.asks):
        if price > MAX_PRICE or amount > MAX_AMOUNT:
            raise BookFileError(
                f"{where}: {symbol} level [{price:g}, {amount:g}] is beyond any real market "
                f"(price ≤ {MAX_PRICE:g}, amount ≤ {MAX_AMOUNT:g})"
            )
    if book.bids and book.asks and book.best_bid >= book.best_ask:
        raise BookFileError(f"{where}: {symbol} is crossed: best bid {book.best_bid:g} ≥ best ask {book.best_ask:g}")
