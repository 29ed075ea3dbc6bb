"""A directory of markets: one OHLCV CSV per market named `<exchange>__<BASE>-<QUOTE>.csv`, same timestamps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from services.trainer.data import DataError, load_bars
from shared.rl.bars import NS_PER_S, Bars
from shared.rl.portfolio import Market

NAME = re.compile(r"^(?P<exchange>[a-z0-9_]+?)__(?P<base>[A-Za-z0-9]+)-(?P<quote>[A-Za-z0-9]+)\.csv$")


def load_market_dir(path: str | Path) -> tuple[list[Market], list[Bars]]:
    """The markets (sorted by file name: the action order) and their bars; DataError when the
    names do not follow the pattern or the bars are not at the same times in every file."""
    directory = Path(path)
    files = sorted(p for p in directory.iterdir() if p.suffix == ".csv")
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
