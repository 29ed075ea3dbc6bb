"""Settings of the executor area (`TRADEWIND_EXECUTOR__...`): paper exchange, gateways, strategy.

The paper exchange takes its venue parameters from here, so a backtest and the running executor
simulate with the same fees, latencies and margin thresholds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from shared.sections.base import Section


class VenueSim(Section):
    """How the paper exchange models one venue. Defaults are the venue's public base tier."""

    taker_fee: float = Field(0.001, ge=0, lt=0.1, description="fraction of notional")
    maker_fee: float = Field(0.001, ge=-0.01, lt=0.1, description="fraction of notional; negative is a rebate")
    fee_in: Literal["received", "quote"] = Field(
        "received", description="'received': the asset the order receives (Binance); 'quote': always quote"
    )
    order_latency_ms: float = Field(5.0, ge=0, description="order or cancel: us → venue")
    report_latency_ms: float = Field(5.0, ge=0, description="acknowledgement or fill: venue → us")
    latency_jitter_ms: float = Field(1.0, ge=0, description="uniform extra delay, drawn from the seeded RNG")
    margin_call_level: float = Field(1.3, gt=1, description="margin level at or below which a call is raised")
    liquidation_level: float = Field(1.1, gt=1, description="margin level at or below which it liquidates")
    max_leverage: float = Field(3.0, ge=1, description="borrowing stops when margin level would fall below this")
    interest_daily: dict[str, float] = Field(
        default_factory=lambda: {"USDT": 0.0003, "BTC": 0.0002, "ETH": 0.0002},
        description="daily borrow rate per asset; accrued hourly as rate/24 on the amount borrowed",
    )
    interest_daily_default: float = Field(0.0005, ge=0, description="daily rate of assets not listed")
    valuation_asset: str = Field("USDT", description="asset that margin levels are computed in")


def _venue(taker: float, maker: float, fee_in: Literal["received", "quote"] = "received") -> VenueSim:
    return VenueSim(taker_fee=taker, maker_fee=maker, fee_in=fee_in)


def default_venues() -> dict[str, VenueSim]:
    """Base-tier spot fees as published by each venue (2024-2025 schedules)."""
    return {
        "binance": _venue(0.001, 0.001),
        "binance_us": _venue(0.006, 0.004, "quote"),
        "binance_futures": _venue(0.0005, 0.0002, "quote"),
        "coinbase": _venue(0.006, 0.004, "quote"),
        "kraken": _venue(0.004, 0.0025, "quote"),
        "okx": _venue(0.001, 0.0008),
        "bybit": _venue(0.001, 0.001),
        "bitstamp": _venue(0.004, 0.003, "quote"),
        "bitfinex": _venue(0.002, 0.001),
        "gemini": _venue(0.004, 0.002, "quote"),
        "synth": _venue(0.001, 0.001),  # the generated market of `--mode synth`: Binance spot's fees
    }


class TransferRule(Section):
    """Moving one asset between venues: how long it takes and what the sending venue charges."""

    settle_s: float = Field(600.0, ge=0)
    fee: float = Field(0.0, ge=0, description="in the asset moved, charged by the sender")


def default_transfers() -> dict[str, TransferRule]:
    return {
        "XNO": TransferRule(settle_s=1.0, fee=0.0),
        "BTC": TransferRule(settle_s=1800.0, fee=0.0002),
        "ETH": TransferRule(settle_s=300.0, fee=0.002),
        "USDT": TransferRule(settle_s=300.0, fee=1.0),
        "XRP": TransferRule(settle_s=5.0, fee=0.25),
    }


class CcxtVenue(Section):
    """A live venue reached through ccxt. Keys come from the environment or secret files only."""

    ccxt_id: str = Field("binance", description="ccxt exchange class name")
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    urls: dict[str, str] = Field(
        default_factory=dict, description="override entries of ccxt's urls['api'] (e.g. a local fake venue)"
    )
    withdraw_allowlist: dict[str, list[str]] = Field(
        default_factory=dict, description="asset → addresses withdrawals may go to; anything else is refused"
    )
    testnet: bool = Field(
        False, description="trade on the venue's test network (ccxt set_sandbox_mode), before any URL override"
    )
    market_types: list[str] = Field(
        default_factory=lambda: ["spot", "linear"], description="ccxt market types to load: spot, linear (USD-M)"
    )
    margin: bool = Field(True, description="load margin markets and the cross/isolated margin wallets")
    timeout_ms: int = Field(10_000, gt=0, description="ccxt's per-request timeout")
    receive_window_ms: int = Field(
        5_000,
        gt=0,
        description="the venue's receive window (Binance recvWindow): a request older than this is refused, "
        "so an order not found after it has passed was never placed",
    )
    not_found_lookups: int = Field(
        3,
        ge=1,
        description="'not found' answers (after the receive window) before an unknown order counts as never placed",
    )
    clock_skew_ms: int = Field(1_000, ge=0, description="added to the receive window for the venue's clock")
    lookup_backoff_s: float = Field(0.5, gt=0, description="first wait before looking an unknown order up again")
    lookup_backoff_max_s: float = Field(30.0, gt=0, description="longest wait between two lookups")
    websocket: bool = Field(True, description="order updates from the private websocket (ccxt pro); REST fallback")
    rest_poll_s: float = Field(1.0, gt=0, description="REST refresh of open orders while the websocket is down")
    rest_check_s: float = Field(
        10.0, gt=0, description="REST refresh of open orders while the websocket is up: finds a report it never sent"
    )
    audit_tolerance: float = Field(
        1e-6, ge=0, description="relative difference of a balance tolerated by the reconciliation"
    )


class ExecutorSettings(Section):
    """Settings of the executor area."""

    group: str = Field("executor", description="consumer group on orders:intents")
    gateway: Literal["paper", "ccxt"] = Field("paper", description="ccxt needs TRADEWIND_LIVE=1 and mode live")
    seed: int = Field(7, description="seed of the paper exchange's latency draws")
    venues: dict[str, VenueSim] = Field(default_factory=default_venues)
    transfers: dict[str, TransferRule] = Field(default_factory=default_transfers)
    transfer_default: TransferRule = TransferRule()
    initial_balances: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            ex: {"USDT": 10_000.0, "BTC": 0.5, "ETH": 5.0, "EUR": 10_000.0, "USD": 10_000.0}
            for ex in (
                "binance",
                "binance_us",
                "binance_futures",
                "coinbase",
                "kraken",
                "okx",
                "bybit",
                "bitstamp",
                "bitfinex",
            )
        },
        description="paper balances per venue and asset, deposited on first start",
    )
    live_venues: dict[str, CcxtVenue] = Field(default_factory=dict)
    strategy_enabled: bool | None = Field(
        None, description="run the baseline momentum strategy; default: on in replay mode, off otherwise"
    )
    strategy_notional: float = Field(50.0, gt=0, description="quote value of each baseline order")
    strategy_quotes: list[str] = Field(
        default_factory=lambda: ["USDT", "USD", "USDC", "BUSD", "FDUSD", "DAI", "TUSD"],
        description="quote assets the baseline trades (its notional is in them); other markets are left alone",
    )
    strategy_lookback: int = Field(10, ge=2, description="book updates the momentum signal looks back")
    strategy_threshold_bps: float = Field(1.0, ge=0, description="mid move (bps) that triggers an order")
    strategy_cooldown_s: float = Field(1.0, ge=0, description="least time between two orders per symbol")
    rl_enabled: bool | None = Field(
        None, description="trade the promoted RL policy (policies table / policy:updates); default: on in replay mode"
    )
    rl_notional: float = Field(
        1_000.0, gt=0, description="quote value a policy position of 1.0 stands for (its paper capital)"
    )
    rl_allow_short: bool = Field(
        False,
        description="let the RL policy go short on spot through the paper exchange's cross margin "
        "(perpetuals short regardless, as in the portfolio env)",
    )
    policy_dir: str | None = Field(
        None,
        description="the only directory RL policies load from (their weights-only actor.npz); None: trainer.policy_dir",
    )
    rl_window_bars: int = Field(20_000, ge=200, description="bars of history the RL features are computed over")
    rl_bar_seconds: float | None = Field(
        None, gt=0, description="override the bar length the policy was trained with (None: its tradewind.json)"
    )
    rl_bar_clock: Literal["receive", "exchange"] | None = Field(
        None,
        description="time RL bars by receive or exchange time; None: the policy's, but receive in replay mode "
        "(a looped replay repeats exchange times)",
    )
    rl_min_order: float = Field(1.0, ge=0, description="least quote value the RL strategy sends as one order")
    reconcile_book_wait_s: float = Field(
        5.0,
        ge=0,
        description="after a restart, wait this long for prices on the markets of unsent orders before "
        "resubmitting them and consuming intents",
    )
    reconcile_interval_s: float = Field(
        60.0, gt=0, description="how often a live gateway's balances and open orders are checked against the venue"
    )
    market_data_group: str = Field("executor-md", description="consumer group on md:book:* / md:trades:*")
    market_data_venues: list[str] = Field(
        default_factory=lambda: [
            "binance",
            "binance_us",
            "binance_futures",
            "coinbase",
            "kraken",
            "okx",
            "bybit",
            "bitstamp",
            "bitfinex",
        ],
    )
