-- Policies are data: the sha256 of each policy's weights-only actor file (actor.npz), recorded when
-- the trial is registered and kept at promotion; the executor refuses weights that hash otherwise.
ALTER TABLE policies ADD COLUMN IF NOT EXISTS weights_sha256 text;
