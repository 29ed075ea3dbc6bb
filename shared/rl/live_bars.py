"""Rolling bars of one market, built trade by trade from the stream.

The same bars `bars_from_trades` builds from a file (empty intervals repeat the last close with
zero volume), kept incrementally with a bounded window so the online trainer's memory is flat.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from shared.rl.bars import NS_PER_S, Bars


class LiveBars:
    """Closed bars of one market plus the bar still forming."""

    def __init__(self, bar_seconds: float, max_bars: int) -> None:
        self.interval = int(bar_seconds * NS_PER_S)
        self.max_bars = max_bars
        self._closed: deque[tuple[int, float, float, float, float, float, float]] = deque(maxlen=max_bars)
        self._bucket: int | None = None
        self._bar: list[float] = []  # open, high, low, close, volume, signed volume
        self.trades = 0
        self.closed_total = 0  # bars closed since the start (len() stops at max_bars)

    def __len__(self) -> int:
        return len(self._closed)

    def add(self, ts_ns: int, price: float, amount: float, buy: bool) -> None:
        """Fold one trade in; a trade later than the forming bar closes it (and fills any gap)."""
        self.trades += 1
        bucket = ts_ns // self.interval
        signed = amount if buy else -amount
        if self._bucket is None:
            self._open(bucket, price, amount, signed)
            return
        if bucket > self._bucket:
            last_close = self._bar[3]
            self._close()
            for gap in range(self._bucket + 1, min(bucket, self._bucket + 1 + self.max_bars)):
                self._closed.append((gap * self.interval, last_close, last_close, last_close, last_close, 0.0, 0.0))
                self.closed_total += 1
            self._open(bucket, price, amount, signed)
            return
        bar = self._bar  # same bar, or a late trade: counted in the forming bar
        bar[1] = max(bar[1], price)
        bar[2] = min(bar[2], price)
        if bucket == self._bucket:
            bar[3] = price
        bar[4] += amount
        bar[5] += signed

    def extend(self, bars: Bars) -> None:
        """Append already-built bars (history from the trades table) before any live trade."""
        if self._bucket is not None:
            raise ValueError("LiveBars.extend: history must come before the first live trade")
        imbalance = bars.imbalance if bars.imbalance is not None else [0.0] * len(bars)
        rows = zip(
            bars.ts.tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume.tolist(),
            list(imbalance),
            strict=True,
        )
        for ts, o, h, low, c, v, imb in rows:
            self._closed.append((ts, o, h, low, c, v, float(imb) * v))

    def _open(self, bucket: int, price: float, amount: float, signed: float) -> None:
        self._bucket = bucket
        self._bar = [price, price, price, price, amount, signed]

    def _close(self) -> None:
        assert self._bucket is not None
        o, h, low, c, v, s = self._bar
        self._closed.append((self._bucket * self.interval, o, h, low, c, v, s))
        self.closed_total += 1

    def bars(self) -> Bars:
        """The closed bars, oldest first."""
        if not self._closed:
            raise ValueError("LiveBars: no closed bars yet")
        cols = np.array(self._closed, dtype=np.float64)
        volume = cols[:, 5]
        imbalance = np.divide(cols[:, 6], volume, out=np.zeros(len(volume)), where=volume > 0)
        return Bars(
            ts=np.array([row[0] for row in self._closed], dtype=np.int64),
            open=cols[:, 1],
            high=cols[:, 2],
            low=cols[:, 3],
            close=cols[:, 4],
            volume=volume,
            imbalance=imbalance,
        )
