"""Several markets' bars at the same times: a directory of OHLCV CSVs named `<exchange>__<BASE>-<QUOTE>.csv`
(same timestamps), or the `trades` table for a list of markets (bars built per market, then aligned).

Recorded funding for a perpetual market (`<venue>_futures`) may sit beside its bars as
`<exchange>__<BASE>-<QUOTE>.funding.csv` (header `date,rate`: the funding rate per 8 hours that
applies from `date` on) or as a freqtrade funding-rate feather renamed
`<exchange>__<BASE>-<QUOTE>.funding.feather` (columns `date`, `open` = the rate). A rate applies
from its timestamp on: the bar that starts holding at t pays the latest rate stamped at or before
t (no look-ahead), pro rata per bar. Perpetuals without such a file, and bars before a file's first
rate, pay the stated constant `portfolio.funding_rate_8h`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from services.trainer.data import DataError, _to_ns, load_bars, load_bars_from_db
from shared.rl.bars import NS_PER_S, Bars
from shared.rl.portfolio import SECONDS_PER_8H, Market, is_perpetual

NAME = re.compile(r"^(?P<exchange>[a-z0-9_]+?)__(?P<base>[A-Za-z0-9]+)-(?P<quote>[A-Za-z0-9]+)\.csv$")
FUNDING_SUFFIXES = (".funding.csv", ".funding.feather")


def _is_funding(path: Path) -> bool:
    return path.name.endswith(FUNDING_SUFFIXES)


def market_file_stem(market: Market) -> str:
    """`binance_futures__BTC-USDT` for ("binance_futures", "BTC/USDT")."""
    base, quote = market[1].split("/", 1)
    return f"{market[0]}__{base}-{quote}"


def load_market_dir(path: str | Path) -> tuple[list[Market], list[Bars]]:
    """The markets (sorted by file name: the action order) and their bars; DataError when the
    names do not follow the pattern or the bars are not at the same times in every file."""
    directory = Path(path)
    files = sorted(p for p in directory.iterdir() if p.suffix == ".csv" and not _is_funding(p))
    if len(files) < 2:
        raise DataError(
            f"{directory}: expected at least two `<exchange>__<BASE>-<QUOTE>.csv` files, found {len(files)}"
        )
    markets: list[Market] = []
    bars: list[Bars] = []
    for file in files:
        match = NAME.match(file.name)
        if match is None:
            raise DataError(f"{file}: expected a name like binance__BTC-USDT.csv (<exchange>__<BASE>-<QUOTE>.csv)")
        markets.append((match["exchange"], f"{match['base'].upper()}/{match['quote'].upper()}"))
        bars.append(load_bars(file))
    first = bars[0].ts
    for file, b in zip(files[1:], bars[1:], strict=True):
        if len(b.ts) != len(first) or not np.array_equal(b.ts, first):
            diff = np.setdiff1d(b.ts, first)
            extra = np.setdiff1d(first, b.ts)
            where = int((diff if len(diff) else extra)[0]) // NS_PER_S if len(diff) or len(extra) else None
            raise DataError(
                f"{file}: {len(b.ts)} bars misaligned with {files[0].name} ({len(first)} bars)"
                + (f"; first differing bar at {where} s" if where is not None else "")
                + "; expected the same timestamps in every market"
            )
    return markets, bars


def read_funding_file(path: str | Path) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(timestamps ns, rate per 8 h) of a funding file, sorted by time; DataError when unreadable."""
    file = Path(path)
    try:
        frame = pd.read_feather(file) if file.name.endswith(".feather") else pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: expected a funding file (`date,rate`): {exc}") from exc
    column = "rate" if "rate" in frame.columns else "open" if file.name.endswith(".feather") else None
    if "date" not in frame.columns or column is None or frame.empty:
        raise DataError(f"{file}: expected columns `date,rate` and at least one row, found {list(frame.columns)}")
    ts = _to_ns(frame["date"], str(file))
    rate = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(rate) | (np.abs(rate) > 0.05))
    if len(bad):
        raise DataError(
            f"{file}: row {int(bad[0]) + 2}: expected a funding rate per 8 h, found {frame[column].iloc[bad[0]]!r}"
        )
    order = np.argsort(ts, kind="stable")
    return ts[order], rate[order]


def funding_per_bar(
    bar_ts: NDArray[np.int64],
    bar_seconds: float,
    rate_ts: NDArray[np.int64],
    rate_8h: NDArray[np.float64],
    fallback_8h: float,
) -> NDArray[np.float64]:
    """The fraction of a long's notional paid over bar t -> t+1 (held from close[t], i.e. from
    bar_ts[t] + bar_seconds): the latest rate stamped at or before that time, pro rata; the
    constant before the first rate."""
    held_from = bar_ts + round(bar_seconds * NS_PER_S)
    idx = np.searchsorted(rate_ts, held_from, side="right") - 1
    rate = np.where(idx >= 0, rate_8h[np.maximum(idx, 0)], fallback_8h)
    return rate * bar_seconds / SECONDS_PER_8H


def load_market_funding(
    path: str | Path, markets: list[Market], bars: list[Bars], fallback_8h: float
) -> tuple[dict[Market, NDArray[np.float64]], dict[str, str]]:
    """Recorded funding per bar for the perpetuals of DIR that have a funding file, and for every
    perpetual where its funding comes from (`recorded <file>: N rates, K bars before the first at
    the constant` or `constant <rate> per 8h`)."""
    directory = Path(path)
    funding: dict[Market, NDArray[np.float64]] = {}
    sources: dict[str, str] = {}
    for market, b in zip(markets, bars, strict=True):
        stem = market_file_stem(market)
        files = [directory / f"{stem}{suffix}" for suffix in FUNDING_SUFFIXES]
        found = [f for f in files if f.exists()]
        key = f"{market[0]}:{market[1]}"
        if not is_perpetual(market[0]):
            if found:
                raise DataError(f"{found[0]}: funding given for {key}, which is not a perpetual (`<venue>_futures`)")
            continue
        if not found:
            sources[key] = f"constant {fallback_8h:g} per 8h (no {stem}.funding.csv)"
            continue
        rate_ts, rate = read_funding_file(found[0])
        funding[market] = funding_per_bar(b.ts, b.bar_seconds, rate_ts, rate, fallback_8h)
        held_from = b.ts + round(b.bar_seconds * NS_PER_S)
        before = int(np.count_nonzero(held_from < rate_ts[0]))
        sources[key] = f"recorded {found[0].name}: {len(rate)} rates" + (
            f"; {before} bars before the first at the constant {fallback_8h:g} per 8h" if before else ""
        )
    return funding, sources


def parse_market(spec: str) -> Market:
    """`binance:BTC/USDT` -> ("binance", "BTC/USDT"); DataError naming the spec otherwise."""
    exchange, sep, symbol = spec.partition(":")
    base, slash, quote = symbol.partition("/")
    if not sep or not exchange or not slash or not base or not quote:
        raise DataError(f"--market {spec!r}: expected EXCHANGE:BASE/QUOTE, e.g. binance:BTC/USDT")
    return exchange.strip().lower(), symbol.strip().upper()


def align_bars(markets: list[Market], bars: list[Bars]) -> list[Bars]:
    """Cut each market's bars (on the same bar grid) to the span every market covers.

    DataError naming the market when the spans do not overlap, or when the bars inside the
    common span are not at the same times (different bar lengths or gaps)."""
    first = max(int(b.ts[0]) for b in bars)
    last = min(int(b.ts[-1]) for b in bars)
    if first > last:
        late = max(range(len(bars)), key=lambda i: int(bars[i].ts[0]))
        early = min(range(len(bars)), key=lambda i: int(bars[i].ts[-1]))
        raise DataError(
            f"{markets[late][0]} {markets[late][1]}: its bars start at {first // NS_PER_S} s, after the last bar "
            f"of {markets[early][0]} {markets[early][1]} ({last // NS_PER_S} s); expected overlapping spans"
        )
    out = [b.slice(int(b.ts.searchsorted(first)), int(b.ts.searchsorted(last, side="right"))) for b in bars]
    for market, b in zip(markets[1:], out[1:], strict=True):
        if not np.array_equal(b.ts, out[0].ts):
            raise DataError(
                f"{market[0]} {market[1]}: {len(b)} bars between {first // NS_PER_S} s and {last // NS_PER_S} s, "
                f"{markets[0][0]} {markets[0][1]} has {len(out[0])}; expected bars at the same times"
            )
    if len(out[0]) < 2:
        raise DataError(f"{', '.join(f'{e} {s}' for e, s in markets)}: {len(out[0])} common bar(s); expected >= 2")
    return out


async def load_markets_from_db(
    db: Any,
    markets: list[Market],
    bar_seconds: float,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Bars]:
    """Bars of every market from the `trades` table over [start, end), aligned; DataError naming a
    market without trades in the window."""
    bars = [await load_bars_from_db(db, ex, sym, bar_seconds, start, end) for ex, sym in markets]
    return align_bars(markets, bars)
