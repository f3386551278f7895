-- Attempts refused while a counter's delay runs: the first refusal of each
-- delay writes one audit event, the rest only count here.
ALTER TABLE login_throttle ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
