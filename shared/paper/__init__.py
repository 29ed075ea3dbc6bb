"""The paper exchange: a deterministic simulator of venues, shared by the executor and backtests."""

from shared.paper.accounts import Accounts, Balance, InsufficientBalance, LedgerEntry, Wallet
from shared.paper.exchange import MarginNotice, PaperExchange, PaperOrder, Transfer, dec
from shared.paper.rules import SymbolRules, load_binance_exchange_info

__all__ = [
    "Accounts",
    "Balance",
    "InsufficientBalance",
    "LedgerEntry",
    "MarginNotice",
    "PaperExchange",
    "PaperOrder",
    "SymbolRules",
    "Transfer",
    "Wallet",
    "dec",
    "load_binance_exchange_info",
]
