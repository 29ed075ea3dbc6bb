-- Arbitrage (issue 6): every detected opportunity (with the guards' decision) and every execution
-- (expected vs realized profit, latency from the book update to the first order, its orders).

CREATE TABLE arb_opportunities (
    id              bigserial        PRIMARY KEY,
    exchange        text             NOT NULL,
    assets          text[]           NOT NULL,          -- start asset first and last
    legs            jsonb            NOT NULL,          -- planned fills: symbol, side, price, amount
    gross_return    double precision NOT NULL,          -- top of book, before fees
    net_return      double precision NOT NULL,          -- top of book, after fees (the detected edge)
    start_amount    double precision NOT NULL,          -- depth-aware size, in the start asset
    expected_profit double precision NOT NULL,
    decision        text             NOT NULL,          -- fired, or why not: stale_book, cooldown, ...
    execution_id    text,
    book_ts         timestamptz      NOT NULL,          -- receive time of the update that revealed it
    detected_at     timestamptz      NOT NULL
);
CREATE INDEX ON arb_opportunities (detected_at);

CREATE TABLE arb_executions (
    execution_id    text             PRIMARY KEY,
    exchange        text             NOT NULL,
    assets          text[]           NOT NULL,
    mode            text             NOT NULL,          -- all_at_once | sequential
    status          text             NOT NULL,          -- completed | unwound | unwind_failed
    net_return      double precision NOT NULL,          -- detected edge
    start_amount    double precision NOT NULL,          -- start asset the first leg was sized to spend
    expected_profit double precision NOT NULL,          -- in the start asset, for the capped size
    realized_profit double precision NOT NULL,          -- start asset gained, other assets left at mid
    latency_us      double precision NOT NULL,          -- book update received -> first order intent
    failure         text             NOT NULL DEFAULT '',
    orders          jsonb            NOT NULL,
    residuals       jsonb            NOT NULL,          -- other assets changed (dust, deficits, unwind leftovers)
    started_at      timestamptz      NOT NULL,
    finished_at     timestamptz      NOT NULL
);
CREATE INDEX ON arb_executions (started_at);
