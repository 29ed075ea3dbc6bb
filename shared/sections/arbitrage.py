"""Settings of the arbitrage area (`TRADEWIND_ARBITRAGE__...`)."""

from pathlib import Path

from pydantic import Field

from shared.sections.base import Section


class ArbitrageSettings(Section):
    """Cycle detection within one venue; also the defaults of `tradewind arb scan`."""

    fee_bps: float = Field(
        10.0,
        ge=0,
        lt=10_000,
        description="taker fee per leg, in basis points, where the market list has none",
    )
    max_len: int = Field(4, ge=3, le=4, description="longest cycle enumerated (3 or 4 legs)")
    start_assets: list[str] = Field(
        default_factory=list,
        description="assets a cycle may start and end in, preferred first; empty: any (hubs preferred)",
    )
    min_net_return: float = Field(
        0.0, ge=0, description="a cycle is reported only above this net return at the top of the book"
    )
    book_max_age_ms: float = Field(
        500.0, gt=0, description="a leg whose book is older than this is not traded (execution guard)"
    )
    slippage_bps: float = Field(
        5.0, ge=0, description="buffer per leg: the edge must cover it, and IOC limits allow this much worse"
    )
    max_start_amount: dict[str, float] = Field(
        default_factory=dict, description="per start asset, the most one cycle execution may spend (e.g. USDT: 500)"
    )
    max_executions_per_hour: int = Field(60, ge=0, description="cycle executions started per rolling hour")
    cooldown_s: float = Field(30.0, ge=0, description="pause after a failed execution before trading again")
    enabled: bool | None = Field(
        None, description="run the cycle strategy in the executor; default: on in replay mode, off otherwise"
    )
    venues: list[str] = Field(
        default_factory=lambda: [
            "binance",
            "binance_us",
            "coinbase",
            "kraken",
            "okx",
            "bitstamp",
            "bitfinex",
            "gemini",
        ],
        description="spot venues whose books the strategy watches (one cycle graph each)",
    )
    markets_files: dict[str, Path] = Field(
        default_factory=dict,
        description="venue → market list (exchangeInfo or ccxt JSON) fixing the graph and lot rules up front; "
        "without one, the graph grows with the symbols seen on md:book and uses the paper venue's taker fee",
    )
    sizing_depth: int = Field(20, ge=1, le=1000, description="book levels per side that sizing walks")
    record_interval_s: float = Field(
        1.0, ge=0, description="an opportunity that persists is stored (and logged) at most this often per cycle"
    )
    log_interval_s: float = Field(10.0, gt=0, description="how often the scanning summary is logged at INFO")
    max_unwind_orders: int = Field(8, ge=1, description="market orders one failed execution may use to unwind")
    cross_enabled: bool | None = Field(
        None, description="run the cross-venue strategy in the executor; default: as `enabled`"
    )
    cross_venues: list[str] = Field(
        default_factory=list,
        description="venues the cross-venue strategy trades between (markets listed on two or more of them); "
        "empty: the executor's market_data_venues that the paper venue simulates",
    )
    cross_max_amount: dict[str, float] = Field(
        default_factory=dict, description="per base asset, the most one cross-venue execution may buy (e.g. BTC: 0.05)"
    )
    cross_max_transfer_s: float = Field(
        60.0, ge=0, description="rebalancing transfers use only assets that settle within this many seconds"
    )
    cross_rebalance_below: float = Field(
        0.5, ge=0, le=1, description="top a venue's asset up when it falls below this fraction of its starting amount"
    )
    cross_leg_timeout_s: float = Field(
        5.0, gt=0, description="a leg whose report has not come by then is looked up in the records and the venue"
    )
