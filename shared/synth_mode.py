"""What `--mode synth` changes in the settings: every service looks at the generated market only.

Applied by ``Settings`` after validation when ``mode == "synth"``, and only to settings that were
not set explicitly (by the environment, a config file or the caller), so any of them can still be
tuned, e.g. ``TRADEWIND_TRAINER__INTERVAL_S=300``. The trainer builds 0.25 s bars by exchange time, one
per step of the generated market (``shared.synth_market``; its trades are evenly spaced in exchange
time, so no bar depends on how late a frame arrived), starts once it has 400 of them (100 s) and trains a
long/flat policy, since the venue is spot and the RL strategy does not short it; a round follows
a minute after the last one ends, so later rounds challenge the champion while the user watches. The executor's RL
strategy times its bars as the policy was trained (exchange time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from shared.sections.base import Section
from shared.synth_market import EXCHANGE, SYMBOL

if TYPE_CHECKING:
    from shared.config import Settings

S = TypeVar("S", bound=Section)

TRAINER = {
    "venues": [EXCHANGE],
    "symbol": SYMBOL,
    "bar_seconds": 0.25,
    "bar_clock": "exchange",
    "min_bars": 400,
    "first_round_s": 20.0,
    "interval_s": 60.0,
    "allow_short": False,
}
EXECUTOR = {
    "market_data_venues": [EXCHANGE],
    "rl_enabled": True,
    "strategy_enabled": True,  # the momentum baseline trades beside the learned policy
}
RISK = {"market_data_venues": [EXCHANGE]}
BALANCES = {"USDT": 10_000.0}  # spot, long or flat: quote to buy with, no base to start


def unset(section: S, defaults: dict[str, Any]) -> S:
    return section.model_copy(update={k: v for k, v in defaults.items() if k not in section.model_fields_set})


def apply_synth_defaults(settings: Settings) -> None:
    """Point the trainer, executor and risk at the `synth` venue (what was set explicitly stays)."""
    settings.trainer = unset(settings.trainer, TRAINER)
    executor = unset(settings.executor, EXECUTOR)
    if "initial_balances" not in settings.executor.model_fields_set:
        executor = executor.model_copy(update={"initial_balances": {EXCHANGE: dict(BALANCES)}})
    settings.executor = executor
    settings.risk = unset(settings.risk, RISK)
