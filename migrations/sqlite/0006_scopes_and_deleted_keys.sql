-- See the Postgres migration of the same name.
ALTER TABLE key_activity ADD COLUMN scope TEXT;
ALTER TABLE api_keys ADD COLUMN deleted_at TEXT;
