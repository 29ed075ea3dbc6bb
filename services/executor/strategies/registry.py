"""The strategies the executor can host, by name, each built from settings by its factory.

A factory returns None when the settings leave its strategy off (``executor.strategy_enabled``,
``executor.rl_enabled``, ``arbitrage.enabled``). The order of ``FACTORIES`` is the order the host
calls the strategies in, so the intents of one batch are published in that order. Adding a strategy
is one module with a ``build(ctx)`` and one line here; the host does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from services.executor.strategies import arbitrage, arbitrage_cross, momentum, rl
from services.executor.strategies.base import Strategy, StrategyContext

Factory = Callable[[StrategyContext], Strategy | None]

FACTORIES: Mapping[str, Factory] = MappingProxyType(
    {
        "arb": arbitrage.build,  # first: a book update's cycle legs are published before the baseline's order
        "xarb": arbitrage_cross.build,  # across venues, on markets two or more venues list
        "momentum": momentum.build,
        "rl": rl.build,
    }
)


def build_strategies(ctx: StrategyContext, factories: Mapping[str, Factory] = FACTORIES) -> dict[str, Strategy]:
    """The strategies the settings turn on, by name."""
    built = {name: factory(ctx) for name, factory in factories.items()}
    return {name: strategy for name, strategy in built.items() if strategy is not None}
