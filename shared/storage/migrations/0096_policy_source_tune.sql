-- `tradewind tune` records every Ray Tune trial in the registry, so the deflated Sharpe counts them.
ALTER TABLE policies DROP CONSTRAINT IF EXISTS policies_source_check;
ALTER TABLE policies ADD CONSTRAINT policies_source_check CHECK (source IN ('online', 'manual', 'offline', 'tune'));
