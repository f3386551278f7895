-- The scope catalogue's changes appear in the key activity log (deployment-wide
-- rows have an empty account_id and key_id), and deleted keys leave listings.
ALTER TABLE key_activity ADD COLUMN scope TEXT;
ALTER TABLE api_keys ADD COLUMN deleted_at TIMESTAMPTZ;
