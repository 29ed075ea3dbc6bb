-- Cross-venue arbitrage (issue 19): which strategy recorded an opportunity or execution ("arb" cycles
-- inside one venue, "xarb" across venues), the inventory transfers the cross-venue strategy made (their
-- cost is charged to its PnL), and executions in flight (so that a restarted executor resolves them).
ALTER TABLE arb_opportunities ADD COLUMN strategy text NOT NULL DEFAULT 'arb';
ALTER TABLE arb_executions ADD COLUMN strategy text NOT NULL DEFAULT 'arb';

CREATE TABLE arb_transfers (
    transfer_id   text             PRIMARY KEY,
    strategy      text             NOT NULL,
    from_venue    text             NOT NULL,
    to_venue      text             NOT NULL,
    asset         text             NOT NULL,
    amount        double precision NOT NULL,   -- sent, fee included
    fee           double precision NOT NULL,   -- in the asset moved
    cost          double precision NOT NULL,   -- the fee in cost_asset, charged to the strategy's PnL
    cost_asset    text             NOT NULL,
    settle_s      double precision NOT NULL,
    created_at    timestamptz      NOT NULL
);

CREATE TABLE arb_inflight (
    execution_id  text             PRIMARY KEY,
    strategy      text             NOT NULL,
    state         jsonb            NOT NULL,
    updated_at    timestamptz      NOT NULL DEFAULT now()
);
