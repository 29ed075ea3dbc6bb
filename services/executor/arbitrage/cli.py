"""`tradewind arb`: cycle arbitrage tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from services.executor.arbitrage.books import BookFileError, load_books
from services.executor.arbitrage.markets import MarketFileError, load_markets, markets_from_symbols
from services.executor.arbitrage.scan import Opportunity, scan


@click.group()
def arb() -> None:
    """Cycle arbitrage inside one venue (A→B→C→A) on order-book snapshots."""


@arb.command("scan")
@click.option(
    "--books",
    "books_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON lines, one per market: {"symbol": "ETH/BTC", "bids": [[p, a], ...], "asks": [...]}',
)
@click.option(
    "--markets",
    "markets_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="venue market list (Binance exchangeInfo or ccxt markets JSON, .gz allowed) for lot "
    "sizes, min notional and fees; default: the book symbols, unconstrained",
)
@click.option(
    "--fee-bps",
    type=float,
    default=None,
    help="taker fee per leg in basis points where the market list gives none [default: settings arbitrage.fee_bps, 10]",
)
@click.option(
    "--max-len",
    type=click.IntRange(3, 4),
    default=None,
    help="longest cycle: 3 or 4 legs [default: settings arbitrage.max_len, 4]",
)
@click.option(
    "--start",
    "start",
    default=None,
    metavar="ASSETS",
    help="comma-separated assets a cycle must start and end in, preferred first (e.g. USDT,BTC); "
    "default: any asset, best-connected first",
)
@click.option(
    "--min-return",
    type=float,
    default=None,
    help="report only cycles whose net return at the top of the book exceeds this (e.g. 0.001)",
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
def scan_command(
    books_path: Path,
    markets_path: Path | None,
    fee_bps: float | None,
    max_len: int | None,
    start: str | None,
    min_return: float | None,
    as_json: bool,
) -> None:
    """Find profitable cycles in one snapshot of order books, best first."""
    from shared.cli_support import InputError, load_settings_or_exit

    settings = load_settings_or_exit().arbitrage
    fee = (settings.fee_bps if fee_bps is None else fee_bps) / 10_000
    if not 0 <= fee < 1:
        raise click.BadParameter(f"must be in [0, 10000), got {fee * 10_000}", param_hint="--fee-bps")
    start_assets = [a.strip() for a in start.split(",") if a.strip()] if start else settings.start_assets
    try:
        books = load_books(books_path)
        markets = load_markets(markets_path, fee) if markets_path else markets_from_symbols(sorted(books), fee)
    except (BookFileError, MarketFileError) as exc:
        raise InputError(str(exc)) from None
    unknown = sorted(set(books) - {m.symbol for m in markets})
    if unknown:
        click.echo(
            f"arb scan: {len(unknown)} book symbol(s) not in the market list, ignored: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}",
            err=True,
        )
    found = scan(
        markets,
        books,
        max_len=max_len or settings.max_len,
        start_assets=start_assets,
        min_net_return=settings.min_net_return if min_return is None else min_return,
    )
    if as_json:
        json.dump([o.to_dict() for o in found], sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_table(found)


def _print_table(found: list[Opportunity]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(found)} profitable cycle(s)")
    for column in ("cycle", "legs", "gross", "net", "start amount", "profit"):
        table.add_column(column, justify="left" if column in ("cycle", "legs") else "right")
    for o in found:
        legs = ", ".join(f"{f.symbol} {('sell', 'buy')[f.side]} {f.amount:g}@{f.price:g}" for f in o.sized.fills)
        table.add_row(
            " → ".join(o.assets),
            legs,
            f"{o.gross_return:.4%}",
            f"{o.net_return:.4%}",
            f"{o.max_start_amount:.8g} {o.assets[0]}",
            f"{o.expected_profit:.8g}",
        )
    Console().print(table)
