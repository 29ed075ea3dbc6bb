-- Trainer: record each trial's hyper-parameters beside its metrics (the registry of issue 5).
ALTER TABLE policies ADD COLUMN IF NOT EXISTS hyperparameters jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS policies_promoted ON policies (exchange, symbol, promoted_at DESC);
