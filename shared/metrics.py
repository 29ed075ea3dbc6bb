"""Prometheus metrics every service exposes: messages in/out, processing latency, errors, reconnects;
and the gauges one service sets for all: the risk service its equity, PnL, exposure and drawdowns,
the dashboard the streams' lengths and consumer lag (deploy/monitoring's Grafana panels query these)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.config import MetricsSettings

_LATENCY_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0)


class ServiceMetrics:
    """One service's metrics on its own registry (no process-global state; tests make their own)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self._server: Any = None  # the WSGI server serve() started, shut down by close()
        labels = ["service", "stream"]
        self.messages_in = Counter(
            "tradewind_messages_in", "Messages consumed from a stream", labels, registry=self.registry
        )
        self.messages_out = Counter(
            "tradewind_messages_out", "Messages published to a stream", labels, registry=self.registry
        )
        self.processing_seconds = Histogram(
            "tradewind_processing_seconds",
            "Time to process one consumed batch, handler and ack included",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("tradewind_errors", "Errors by kind", ["service", "kind"], registry=self.registry)
        self.reconnects = Counter(
            "tradewind_reconnects",
            "Reconnects to a venue or server",
            ["service", "target"],
            registry=self.registry,
        )
        venue, r = ["service", "venue"], self.registry  # venue "*": the whole portfolio
        self.equity = Gauge("tradewind_equity", "Portfolio equity in the quote asset (risk)", venue, registry=r)
        self.pnl = Gauge("tradewind_pnl", "PnL by kind: realized, unrealized (risk)", [*venue, "kind"], registry=r)
        self.exposure = Gauge("tradewind_exposure", "Exposure by kind: gross, net (risk)", [*venue, "kind"], registry=r)
        self.drawdown = Gauge(
            "tradewind_drawdown", "Drawdown from the peak: intraday, total (risk)", ["service", "window"], registry=r
        )
        self.stream_length = Gauge("tradewind_stream_length", "Entries in a stream", labels, registry=r)
        self.consumer_lag = Gauge(
            "tradewind_consumer_lag", "Entries a consumer group has not read yet", [*labels, "group"], registry=r
        )

    def count_in(self, stream: str, n: int) -> None:
        self.messages_in.labels(self.service, stream).inc(n)

    def count_out(self, stream: str, n: int) -> None:
        self.messages_out.labels(self.service, stream).inc(n)

    def observe(self, stream: str, seconds: float) -> None:
        self.processing_seconds.labels(self.service, stream).observe(seconds)

    def error(self, kind: str) -> None:
        self.errors.labels(self.service, kind).inc()

    def reconnect(self, target: str) -> None:
        self.reconnects.labels(self.service, target).inc()

    def record_risk(self, state: dict[str, Any]) -> None:
        """Set the PnL and exposure gauges from the risk service's state (``tw:risk:state``'s JSON)."""
        if state.get("equity") is not None:
            self.equity.labels(self.service, "*").set(state["equity"])
        for window in ("intraday", "total"):
            self.drawdown.labels(self.service, window).set(state.get(f"drawdown_{window}") or 0.0)
        for name, v in state.get("venues", {}).items():
            if v.get("equity") is not None:
                self.equity.labels(self.service, name).set(v["equity"])
            for kind in ("realized", "unrealized"):
                self.pnl.labels(self.service, name, kind).set(v.get(f"{kind}_pnl") or 0.0)
            for kind in ("gross", "net"):
                self.exposure.labels(self.service, name, kind).set(v.get(f"{kind}_exposure") or 0.0)

    def record_streams(self, rows: list[dict[str, Any]]) -> None:
        """Set the stream gauges from ``shared.monitor.as_json`` rows (the `tradewind streams` data)."""
        for s in rows:
            self.stream_length.labels(self.service, s["name"]).set(s["length"])
            for g in s["groups"]:
                if g.get("lag") is not None:
                    self.consumer_lag.labels(self.service, s["name"], g["name"]).set(g["lag"])

    def serve(self, settings: MetricsSettings) -> int:
        """Expose /metrics over HTTP; return the bound port (0 in settings picks a free one)."""
        self._server, _thread = start_http_server(settings.port, addr=settings.host, registry=self.registry)
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        """The port /metrics is served on, or None when it is not served."""
        return None if self._server is None else int(self._server.server_port)

    def close(self) -> None:
        """Stop serving /metrics (the port is free again); the counters are kept."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
