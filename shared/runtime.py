"""How a service process runs: settings, logging, metrics, signals — the same under `tradewind up`,
`python -m services.<name>`, `tradewind <name>` and compose."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from shared.config import ConfigError, Settings, load_settings
from shared.logs import setup_logging
from shared.metrics import ServiceMetrics

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings], Awaitable[None]]


def on_stop(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGINT/SIGTERM instead of cancelling the service (for a graceful drain).

    A second signal still cancels: a stuck drain never blocks a shutdown.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def first() -> None:
        log.info("stop requested; finishing the work in flight")
        callback()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: main and main.cancel())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first)


def service_metrics(settings: Settings) -> ServiceMetrics:
    """Create the process's metrics and serve them if enabled."""
    metrics = ServiceMetrics(settings.service_name)
    if settings.metrics.enabled:
        try:
            port = metrics.serve(settings.metrics)
            log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
        except OSError as exc:
            log.warning("metrics port %d unavailable (%s); metrics not served", settings.metrics.port, exc)
    return metrics


def run_service(name: str, main: ServiceMain, settings: Settings | None = None) -> int:
    """Run one service until it returns or is signalled; return the process exit status."""
    try:
        settings = settings or load_settings(service_name=name)
    except ConfigError as exc:
        print(f"tradewind {name}: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log, name)

    async def runner() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: task and task.cancel())
        await main(settings)

    try:
        asyncio.run(runner())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log.info("%s stopped", name)
    except ConfigError as exc:  # a setting found wrong only once the service looked at it
        log.error("%s: %s", name, exc)
        return 2
    return 0
