-- A policy trades a set of markets (a portfolio policy several, possibly on several venues): the registry
-- keeps them as a jsonb list of {exchange, symbol}, sorted, so one market set compares equal to itself.
-- Rows written before this migration trade their one (exchange, symbol).
ALTER TABLE policies ADD COLUMN IF NOT EXISTS markets jsonb NOT NULL DEFAULT '[]';
UPDATE policies SET markets = jsonb_build_array(jsonb_build_object('exchange', exchange, 'symbol', symbol))
 WHERE exchange IS NOT NULL AND symbol IS NOT NULL AND markets = '[]'::jsonb;
CREATE INDEX IF NOT EXISTS policies_promoted_markets ON policies (markets, promoted_at DESC);
