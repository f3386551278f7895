-- See the Postgres migration.
ALTER TABLE login_throttle ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
