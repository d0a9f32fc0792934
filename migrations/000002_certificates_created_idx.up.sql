-- Listing every account's certificates newest first (the admin page, GET
-- /admin/api/certificates without account_id) walks this index by keyset,
-- as certificates_account_idx serves one account's listing; without it each
-- page is a sequential scan and a sort of the whole table.
CREATE INDEX certificates_created_idx ON certificates (created_at DESC, serial DESC);
