-- Tradewind's tables (DESIGN.md, Storage). Time series are natively partitioned by month;
-- a DEFAULT partition takes rows outside the months created so far (e.g. replayed history).

CREATE TABLE trades (
    exchange   text        NOT NULL,
    symbol     text        NOT NULL,
    trade_id   text        NOT NULL,
    price      float8      NOT NULL,
    amount     float8      NOT NULL,
    side       text        NOT NULL CHECK (side IN ('buy', 'sell')),
    ts         timestamptz NOT NULL,
    recv_ts    timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol, trade_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE trades_default PARTITION OF trades DEFAULT;
CREATE INDEX ON trades (exchange, symbol, ts);

CREATE TABLE book_snapshots (
    exchange   text        NOT NULL,
    symbol     text        NOT NULL,
    ts         timestamptz NOT NULL,
    seq        bigint      NOT NULL,
    bids       jsonb       NOT NULL,
    asks       jsonb       NOT NULL,
    PRIMARY KEY (exchange, symbol, ts, seq)
) PARTITION BY RANGE (ts);
CREATE TABLE book_snapshots_default PARTITION OF book_snapshots DEFAULT;

CREATE TABLE orders (
    client_order_id text        PRIMARY KEY,
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      text        NOT NULL,
    amount          numeric     NOT NULL,
    price           numeric,
    margin_mode     text,
    strategy        text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    venue_order_id  text,
    filled          numeric     NOT NULL DEFAULT 0,
    avg_price       numeric     NOT NULL DEFAULT 0,
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON orders (exchange, status);

CREATE TABLE fills (
    exchange        text        NOT NULL,
    fill_id         text        NOT NULL,
    client_order_id text        NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL CHECK (side IN ('buy', 'sell')),
    price           numeric     NOT NULL,
    amount          numeric     NOT NULL,
    fee             numeric     NOT NULL,
    fee_asset       text        NOT NULL,
    liquidity       text        NOT NULL CHECK (liquidity IN ('maker', 'taker')),
    ts              timestamptz NOT NULL,
    PRIMARY KEY (exchange, fill_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE fills_default PARTITION OF fills DEFAULT;
CREATE INDEX ON fills (client_order_id);

-- Current balance per venue and asset; every change is a ledger row with a natural key.
CREATE TABLE balances (
    exchange    text        NOT NULL,
    asset       text        NOT NULL,
    free        numeric     NOT NULL DEFAULT 0,
    locked      numeric     NOT NULL DEFAULT 0,
    borrowed    numeric     NOT NULL DEFAULT 0,
    interest    numeric     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, asset)
);

CREATE TABLE ledger (
    id          bigserial   PRIMARY KEY,
    exchange    text        NOT NULL,
    asset       text        NOT NULL,
    delta       numeric     NOT NULL,
    kind        text        NOT NULL,  -- deposit, fill, fee, interest, borrow, repay, transfer, liquidation
    ref         text        NOT NULL,  -- the fill id, transfer id, ... that caused it
    ts          timestamptz NOT NULL,
    UNIQUE (exchange, asset, kind, ref)
);

CREATE TABLE positions (
    exchange          text        NOT NULL,
    symbol            text        NOT NULL,
    margin_mode       text        NOT NULL DEFAULT 'spot' CHECK (margin_mode IN ('spot', 'isolated', 'cross')),
    amount            numeric     NOT NULL DEFAULT 0,  -- signed: negative is short
    entry_price       numeric     NOT NULL DEFAULT 0,
    borrowed          numeric     NOT NULL DEFAULT 0,
    interest          numeric     NOT NULL DEFAULT 0,
    liquidation_price numeric,
    realized_pnl      numeric     NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, margin_mode)
);

CREATE TABLE risk_events (
    id          bigserial,
    ts          timestamptz NOT NULL,
    kind        text        NOT NULL,
    severity    text        NOT NULL DEFAULT 'info',
    exchange    text,
    symbol      text,
    detail      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE risk_events_default PARTITION OF risk_events DEFAULT;
CREATE INDEX ON risk_events (kind, ts);

CREATE TABLE policies (
    id             text        PRIMARY KEY,
    algo           text        NOT NULL,
    exchange       text,
    symbol         text,
    data_from      timestamptz,
    data_to        timestamptz,
    metrics        jsonb       NOT NULL DEFAULT '{}',
    checkpoint_uri text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    promoted_at    timestamptz
);

-- Create the monthly partitions of a time-series table for [from, to); safe to call repeatedly.
CREATE FUNCTION tradewind_ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m timestamptz := date_trunc('month', from_ts);
    name text;
BEGIN
    WHILE m < to_ts LOOP
        name := format('%s_%s', parent, to_char(m, 'YYYYMM'));
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               name, parent, m, m + interval '1 month');
            EXCEPTION WHEN check_violation THEN
                -- rows of that month already sit in the DEFAULT partition: leave them there
                RAISE NOTICE 'partition % skipped: its rows are in the default partition', name;
            END;
        END IF;
        m := m + interval '1 month';
    END LOOP;
END $$;
