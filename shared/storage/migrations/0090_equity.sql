-- The dashboard's equity curve (issue 18): the risk service's equity, total ('*') and per venue,
-- sampled every TRADEWIND_DASHBOARD__EQUITY_INTERVAL_S, so the curve survives restarts.

CREATE TABLE equity_snapshots (
    ts              timestamptz      NOT NULL,
    venue           text             NOT NULL,          -- '*' for the whole portfolio
    equity          double precision NOT NULL,
    realized_pnl    double precision NOT NULL DEFAULT 0,
    unrealized_pnl  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (venue, ts)
);
CREATE INDEX ON equity_snapshots (ts);
