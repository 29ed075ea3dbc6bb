-- Executor (issue 4): wallets (spot / cross / isolated:SYMBOL) in balances and ledger, the intent
-- behind each order (resubmitted after a crash), and an outbox of order events so each report is
-- stored once and published once.

ALTER TABLE balances ADD COLUMN wallet text NOT NULL DEFAULT 'spot';
ALTER TABLE balances DROP CONSTRAINT balances_pkey;
ALTER TABLE balances ADD PRIMARY KEY (exchange, wallet, asset);

ALTER TABLE ledger ADD COLUMN wallet text NOT NULL DEFAULT 'spot';
ALTER TABLE ledger DROP CONSTRAINT ledger_exchange_asset_kind_ref_key;
ALTER TABLE ledger ADD CONSTRAINT ledger_natural_key UNIQUE (exchange, wallet, asset, kind, ref);

ALTER TABLE orders ADD COLUMN intent bytea;

CREATE TABLE order_events (
    id              bigserial   PRIMARY KEY,
    client_order_id text        NOT NULL,
    event_key       text        NOT NULL UNIQUE,  -- client id, status, filled: one report stored once
    payload         bytea       NOT NULL,         -- the OrderEvent, msgpack (shared.schemas.encode)
    published       boolean     NOT NULL DEFAULT false,
    deliver_at      bigint      NOT NULL DEFAULT 0,  -- ns; the paper venue's report latency delays publication
    ts              timestamptz NOT NULL
);
CREATE INDEX order_events_unpublished ON order_events (id) WHERE NOT published;
CREATE INDEX ON order_events (client_order_id);
