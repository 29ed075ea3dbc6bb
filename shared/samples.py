"""Where the replay samples that are not package data are found (today: the day sample).

The day sample (24 hours of Bitstamp BTC/USD, 2015-05-01, Level 3) is GPL-2.0-or-later, so it stays
out of the Apache-2.0 wheel: it lives in the repository's ``samples/bitstamp-day/`` beside its
licence and is found in the current folder or a folder above this package (a checkout). An
installed wheel has neither; the error then says where to get it. ``tradewind up`` checks it before
starting anything; the ingest service reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shared.synth_mode import unset

if TYPE_CHECKING:
    from shared.config import Settings

DAY_FOLDER = ("samples", "bitstamp-day")
DAY_FILE = "bitstamp_btcusd_2015-05-01.log.gz"
DAY_EXCHANGE = "bitstamp"
DAY_SYMBOL = "BTC/USD"
# the trainer's bars for the day: one per minute of exchange time (the day has ~3 trades a minute, so
# shorter bars would be mostly empty), rounds from 400 of them (6 h 40 min of market) on; a round every
# 2 minutes is every 2 hours of market at `REPLAY__SPEED=60`
DAY_TRAINER = {
    "venues": [DAY_EXCHANGE],
    "symbol": DAY_SYMBOL,
    "bar_seconds": 60.0,
    "bar_clock": "exchange",
    "first_round_s": 30.0,
    "interval_s": 120.0,
}


class SampleMissing(FileNotFoundError):
    """The chosen sample is not on this machine (the day sample is not in the wheel)."""


def day_sample(bases: tuple[Path, ...] | None = None) -> Path:
    """The folder holding the day sample: ``samples/bitstamp-day`` under the current folder or
    under a folder above this package (``bases`` replaces both, for tests)."""
    if bases is None:
        bases = (Path.cwd(), *Path(__file__).resolve().parents)
    for base in bases:
        folder = base.joinpath(*DAY_FOLDER)
        if (folder / DAY_FILE).is_file():
            return folder
    where = "/".join(DAY_FOLDER)
    raise SampleMissing(
        f"replay sample 'day': {where}/{DAY_FILE} not found in {bases[0]} or above the installed package"
        f" (it is GPL-2.0, so the wheel does not ship it); get {where}/ from the Tradewind repository"
        f" and run from the checkout, or set TRADEWIND_INGEST__REPLAY__DATA=/path/to/{where}"
    )


def apply_day_defaults(settings: Settings) -> None:
    """Point the trainer, the executor's and the risk service's market data at the day's venue (what
    was set explicitly stays), as `--mode synth` does for its market."""
    settings.trainer = unset(settings.trainer, DAY_TRAINER)
    settings.executor = unset(settings.executor, {"market_data_venues": [DAY_EXCHANGE]})
    settings.risk = unset(settings.risk, {"market_data_venues": [DAY_EXCHANGE]})
