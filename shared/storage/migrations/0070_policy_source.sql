-- The registry says where each policy came from and why it was (not) promoted (`tradewind policy list`).
ALTER TABLE policies ADD COLUMN source text NOT NULL DEFAULT 'offline' CHECK (source IN ('online', 'manual', 'offline'));
ALTER TABLE policies ADD COLUMN reason text NOT NULL DEFAULT '';
