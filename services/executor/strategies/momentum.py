"""The momentum baseline as an executor strategy, so the stack trades before the RL policy and
arbitrage exist; the rule itself is ``shared.momentum`` (the risk simulator runs it too)."""

from __future__ import annotations

from typing import ClassVar

from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from shared.momentum import Momentum


def build(ctx: StrategyContext) -> MomentumStrategy | None:
    """The baseline when ``executor.strategy_enabled`` (default: in replay mode only)."""
    cfg = ctx.settings.executor
    enabled = cfg.strategy_enabled if cfg.strategy_enabled is not None else ctx.settings.mode == "replay"
    return MomentumStrategy(cfg, ctx.run_id, ctx.free_balance) if enabled else None


class MomentumStrategy(Momentum, StrategyBase):
    """The rule with the executor's other hooks (no-ops)."""

    feeds: ClassVar[frozenset[Feed]] = frozenset({"book"})
