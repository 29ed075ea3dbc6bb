"""Cycle arbitrage inside one venue: currency graph, cycle enumeration, incremental detection,
depth-aware sizing. Pure code (no Redis, no database) so it is testable and benchmarkable alone."""
