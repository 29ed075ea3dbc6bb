"""Which capture the replay exchange of `tradewind up --mode replay` serves.

``ingest.replay.data`` when set; else ``ingest.replay.sample``: ``default`` is ``sample/`` here (a
few minutes of Binance and Coinbase, package data); ``day`` is the GPL-2.0 Bitstamp day that
``shared.samples`` finds in a checkout (served as today's v2 traffic by ``l3log``).
"""

from __future__ import annotations

from pathlib import Path

from shared.samples import day_sample
from shared.sections.ingest import ReplaySettings

SAMPLES = ("default", "day")
SAMPLE = Path(__file__).parent / "sample"


def replay_data(replay: ReplaySettings) -> Path:
    """The capture file or folder the replay exchange serves."""
    if replay.data is not None:
        return replay.data
    return day_sample() if replay.sample == "day" else SAMPLE
