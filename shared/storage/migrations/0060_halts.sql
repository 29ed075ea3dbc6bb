-- The active halts (shared.halts): kept beside Redis's tw:halts so a halt outlives a Redis that lost its data.
CREATE TABLE halts (
    id        text   PRIMARY KEY,  -- cause:exchange, "*" for every venue
    cause     text   NOT NULL,
    exchange  text,                -- NULL: every venue
    reason    text   NOT NULL,
    issued_by text   NOT NULL DEFAULT '',
    ts        bigint NOT NULL      -- ns since the epoch, as on the stream
);

-- What the risk service must not forget across a restart: its drawdown peaks.
CREATE TABLE risk_state (
    id         int         PRIMARY KEY CHECK (id = 1),
    peak_total float8      NOT NULL,
    peak_day   float8      NOT NULL,
    day        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
