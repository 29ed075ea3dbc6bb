"""One chaos run: a live executor and the risk service as OS processes against the fake venue, while the
executor, risk, Redis and PostgreSQL are killed -9 in turn and the venue misbehaves; then count at the venue.

The fault schedule is by decision number (after so many decisions, not after so many seconds); each
fault waits, with a deadline, until trading has visibly continued after the one before it (a decision
made after it filled and stored in PostgreSQL). Run it with ``python -m tests.chaos [--out FILE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from shared.config import Settings
from tests.chaos import count
from tests.chaos.driver import Driver
from tests.chaos.processes import Service, tradewind
from tests.chaos.servers import AofRedis, CrashablePostgres, until
from tests.executor.fake_venue import FakeBinance, Fault
from tests.executor.fake_venue.harness import DATA, KEY, SECRET, recorded_book, venue_urls

DECISIONS = 180
PACE_S = 0.1  # one decision per PACE_S: the strategy's rate
RECOVERY_S = 90.0  # a fault must be followed by a filled decision within this
HALTED = 30  # decisions between the halt and the resume, however late the halt fired
LIMITS = {
    "max_order_notional": 10_000.0,
    "max_position_notional": 50_000.0,
    "max_gross_exposure": 100_000.0,
    "max_net_exposure": 100_000.0,
    "max_open_orders": 10,
    "orders_per_s": 30.0,
    "order_burst": 60,
    "price_band_bps": 300.0,
    "fee_buffer": 0.002,
}


def toml(urls: dict[str, str], reconcile_s: float) -> str:
    limits = "\n".join(f"{k} = {v!r}" for k, v in LIMITS.items())
    url_lines = "\n".join(f'"{k}" = "{v}"' for k, v in urls.items())
    return f"""
mode = "live"
live = true
[bus]
block_ms = 100
claim_idle_ms = 3000
claim_interval_ms = 500
[metrics]
enabled = false
[storage]
retry_max_s = 120.0
[executor]
market_data_venues = ["binance"]
reconcile_interval_s = {reconcile_s}
reconcile_book_wait_s = 10.0
[executor.live_venues.binance]
ccxt_id = "binance"
receive_window_ms = 1000
clock_skew_ms = 200
lookup_backoff_s = 0.1
lookup_backoff_max_s = 2.0
timeout_ms = 2000
rest_poll_s = 0.5
market_types = ["spot"]
margin = false
[executor.live_venues.binance.urls]
{url_lines}
[risk]
market_data_venues = ["binance"]
heartbeat_timeout_s = 5.0
[risk.venues.binance]
{limits}
"""


class Chaos:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = uuid.uuid4().hex[:6]
        self.redis = AofRedis(workdir / "redis")
        self.pg = CrashablePostgres(workdir / "postgres" / "data")
        self.events: list[dict[str, Any]] = []
        self.halt_window: tuple[int, int] | None = None
        self.stalls: list[str] = []
        self.fake: FakeBinance
        self.driver: Driver
        self.services: dict[str, Service] = {}
        self.env: dict[str, str] = {}

    # ---- the schedule ------------------------------------------------------------------------

    def schedule(self) -> dict[int, tuple[str, Callable[[], Awaitable[None]]]]:
        fake = self.fake
        return {
            15: ("kill -9 executor", lambda: self.kill("executor")),
            20: ("someone trades against every resting order, those the killed executor left included", self.sweep),
            30: ("venue faults: timeout after accept, 5xx after accept, 503 and 429 before accept, late lookup",
                 lambda: self.faults(Fault(hang=True), Fault(status=502), Fault(accept=False, status=503),
                                     Fault(accept=False, status=429), Fault(status=504, hidden_lookups=2))),
            45: ("kill -9 risk", lambda: self.kill("risk")),
            55: ("private websocket down", fake.ws.go_down),
            70: ("private websocket back; next reports duplicated and out of order", self.ws_back),
            85: ("kill -9 redis", self.kill_redis),
            105: ("kill -9 postgres", self.kill_postgres),
            120: ("tradewind halt", self.halt),
            150: ("tradewind resume", self.resume),
            160: ("timeout after accept, then kill -9 executor with its outcome unknown",
                  lambda: self.faults(Fault(hang=True))),
            161: ("kill -9 executor", lambda: self.kill("executor")),
        }  # fmt: skip

    async def kill(self, name: str) -> None:
        pid = await self.services[name].kill9()
        self.note(f"killed {name} pid {pid}")

    async def sweep(self) -> None:
        cids = [o["clientOrderId"] for o in self.fake.orders.values() if o["status"] == "NEW"]
        for cid in cids:
            await self.fake.fill_resting(cid)
        self.note("filled resting orders", client_order_ids=cids)

    async def faults(self, *faults: Fault) -> None:
        self.fake.faults.extend(faults)

    async def ws_back(self) -> None:
        self.fake.ws.come_back()
        self.fake.ws.duplicate, self.fake.ws.hold = 6, 3

    async def kill_redis(self) -> None:
        await self.redis.kill9()
        await self.redis.start()  # same port, same append-only file

    async def kill_postgres(self) -> None:
        await self.pg.kill9()
        await self.pg.restart()

    async def halt(self) -> None:
        await tradewind(self.env, "halt", "--reason", "chaos")
        self.halt_window = (time.time_ns(), 0)  # from the moment the operator's command returned

    async def resume(self) -> None:
        assert self.halt_window is not None
        self.halt_window = (self.halt_window[0], time.time_ns())  # until the operator asked to resume
        await tradewind(self.env, "resume", "--reason", "chaos over")

    def note(self, what: str, **extra: Any) -> None:
        self.events.append({"t": round(time.monotonic() - self.t0, 2), "event": what, **extra})

    # ---- the run -----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        info = (DATA / "binance_exchangeInfo_BTCUSDT_ETHUSDT_NKNUSDT_2021-10-12.json").read_text()
        book = recorded_book()
        self.fake = FakeBinance(info, {"BTCUSDT": book}, KEY, SECRET, unique_client_ids="open")
        self.fake.balances["spot"] = {"USDT": count.D(100_000), "BTC": count.D(1)}
        server = TestServer(self.fake.app(), host="127.0.0.1")
        await server.start_server()
        await self.redis.start()
        await self.pg.start()
        await count.migrate(self.pg.url)
        config = self.workdir / "chaos.toml"
        config.write_text(toml(venue_urls(f"http://127.0.0.1:{server.port}"), reconcile_s=3.0))
        self.env = {
            "TRADEWIND_CONFIG": str(config),
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.pg.url,
            "TRADEWIND_VAR_DIR": str(self.workdir / "var"),
            "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__API_KEY": KEY,
            "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__SECRET": SECRET,
        }
        if "control" in Settings.model_fields:  # risk:control is signed: the services' and the operator's keys
            self.env["TRADEWIND_CONTROL__RISK_KEY"] = f"chaos-risk-{self.tag}"
            self.env["TRADEWIND_CONTROL__OPERATOR_KEY"] = f"chaos-operator-{self.tag}"
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.driver = Driver(self.redis.url, self.tag, logs / "decisions.jsonl", book)
        feed = asyncio.create_task(self.driver.feed())
        for name in ("executor", "risk"):
            self.services[name] = Service(name, self.env, logs)
            self.services[name].start()
        try:
            await until(lambda: count.heartbeat(self.redis.url), "the risk service's first heartbeat", 90)
            self.note("stack up")
            await self.trade()
            self.note("decisions done")
            with contextlib.suppress(TimeoutError):
                await until(
                    lambda: count.settled(self.fake, self.pg.url, self.tag, len(self.driver.decisions)),
                    "the venue and PG to agree",
                    60,
                )
            self.note("settled")
        finally:
            self.driver.stop_feed()
            await feed
            for s in self.services.values():
                await s.stop()
            await self.fake.close()
            await server.close()
        summary = await count.summary(self, self.pg.url)
        with (logs / "venue_orders.jsonl").open("w") as f:  # the venue's side, to read next to the services' logs
            f.writelines(json.dumps(o, default=str) + "\n" for o in self.fake.orders.values())
        await self.driver.close()
        self.redis.stop()
        self.pg.stop()
        return summary

    async def trade(self) -> None:
        """Decide at the strategy's pace; fire each fault at its decision number, but only once a decision
        made after the previous fault has filled (trading continued). Decisions go on while waiting."""
        pending = sorted(self.schedule().items())
        resting: dict[int, str] = {}  # decision number at which to fill -> client id of a resting order
        last: tuple[int, float] | None = None  # the previous fault: decision number, when
        last_due = -1  # the previous fault's place in the schedule
        n = 0
        while pending or n < DECISIONS:
            if pending and n >= pending[0][0]:
                due, (what, act) = pending[0]
                ready = last is None or what == "tradewind resume" or due - last_due <= 1  # back to back on purpose
                if not ready and last is not None:
                    ready = await count.filled_after(self.pg.url, self.tag, last[0])
                    if ready:
                        self.note("trading continued", after_decision=last[0], waited_s=self.since(last[1]))
                    elif time.monotonic() - last[1] > RECOVERY_S:  # counted, and the run goes on
                        self.stalls.append(f"no decision after {last[0]} filled within {RECOVERY_S:.0f}s")
                        self.note("STALL", after_decision=last[0])
                        ready = True
                if ready:
                    pending.pop(0)
                    last_due = due
                    self.note(what, decision=n)
                    await act()
                    last = (n, time.monotonic())
                    if what == "tradewind halt":
                        pending = after_the_halt(pending, n)
            if n in resting:
                await self.fill_resting(resting.pop(n))
            d = await self.driver.decide(resting=n % 10 == 5)
            if d.order_type == "limit":
                resting[n + 3] = d.client_order_id
            n += 1
            await asyncio.sleep(PACE_S)  # the strategy's decision rate

    def since(self, t: float) -> float:
        return round(time.monotonic() - t, 2)

    async def fill_resting(self, cid: str) -> None:
        """Someone trades against our resting order, if it is resting at the venue (a halt cancels them)."""
        orders = [o for o in self.fake.orders_by_client_id(cid) if o["status"] == "NEW"]
        if orders:
            await self.fake.fill_resting(cid)
            self.note("filled resting order", client_order_id=cid)


def after_the_halt(pending: list[tuple[int, Any]], n: int) -> list[tuple[int, Any]]:
    """The halt fires late when trading was slow to go on after the PostgreSQL kill (a loaded machine):
    move the resume, and what follows it, so that HALTED decisions are still refused while halted."""
    resume = next(due for due, (what, _) in pending if what == "tradewind resume")
    shift = max(0, n + HALTED - resume)
    return [(due + shift, entry) for due, entry in pending]


async def main(out: Path | None, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    summary = await Chaos(workdir).run()
    summary["wall_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if out is not None:
        await asyncio.to_thread(out.write_text, text + "\n")
    return summary
