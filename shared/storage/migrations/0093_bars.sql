-- OHLCV bars downloaded from venues (`tradewind download --db`): one row per market, bar length and
-- opening time. Recorded trades stay in `trades`; these are the venue's own candles.
CREATE TABLE bars (
    exchange   text        NOT NULL,
    symbol     text        NOT NULL,
    timeframe  text        NOT NULL,
    ts         timestamptz NOT NULL,
    open       float8      NOT NULL,
    high       float8      NOT NULL,
    low        float8      NOT NULL,
    close      float8      NOT NULL,
    volume     float8      NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE bars_default PARTITION OF bars DEFAULT;
