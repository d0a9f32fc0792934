-- The searchable inventory (GET /api/v1/certificates and GET
-- /admin/api/certificates): every filter is answered from an index, so that no
-- search reads the whole table. docs/BENCHMARKS.md ("Inventory search") shows
-- the plan of each filter at 100,000 rows; internal/store/inventory_test.go
-- fails if any of them turns into a sequential scan.
--
-- These are plain CREATE INDEX statements: migrations run in a transaction,
-- where CONCURRENTLY is not allowed, and each index blocks writes to
-- certificates (issuance) while it is built: all five take about 2.5 s per
-- 100,000 rows, most of it the trigram index. On a larger table, create the
-- same indexes by hand first with CREATE INDEX CONCURRENTLY and the same
-- names: IF NOT EXISTS then makes this migration skip them.

-- Common name, case-insensitive substring (ILIKE '%text%'): a trigram index.
-- pg_trgm ships with PostgreSQL (Debian's postgresql-15 package includes the
-- contrib modules) and is a trusted extension since PostgreSQL 13, so any role
-- with CREATE on the database may install it. Where it is missing or may not
-- be installed, the migration does not fail: it indexes lower(subject_cn)
-- for prefix search instead, says so in a WARNING, and the store then
-- matches common names by prefix (it looks for certificates_cn_trgm_idx).
-- Install pg_trgm later and create certificates_cn_trgm_idx as below to get
-- substring search back.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION
    WHEN insufficient_privilege OR undefined_file OR undefined_object OR feature_not_supported THEN
        RAISE WARNING 'pkid: pg_trgm cannot be installed (%): common-name search falls back to prefix matching', SQLERRM;
END
$$;

DO $$
DECLARE
    trgm_schema name;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF FOUND THEN
        -- The operator class is named with its schema: the extension may
        -- live outside the search path (managed services put it in
        -- "extensions").
        EXECUTE format('CREATE INDEX IF NOT EXISTS certificates_cn_trgm_idx ON certificates USING gin (subject_cn %I.gin_trgm_ops)', trgm_schema);
    ELSE
        CREATE INDEX IF NOT EXISTS certificates_cn_prefix_idx ON certificates (lower(subject_cn) text_pattern_ops);
    END IF;
END
$$;

-- Serial prefix (LIKE 'abc%'). text_pattern_ops compares bytes whatever the
-- database's collation, so the planner can turn the prefix into an index
-- range; the primary key can do so only under the C collation.
CREATE INDEX IF NOT EXISTS certificates_serial_pattern_idx ON certificates (serial text_pattern_ops);

-- SHA-256 fingerprint, exact. Pending rows have none yet.
CREATE INDEX IF NOT EXISTS certificates_fingerprint_idx ON certificates (fingerprint_sha256)
    WHERE fingerprint_sha256 IS NOT NULL;

-- The public-key hash is certificates_spki_idx (spki_sha256, not_after), from
-- migration 3.

-- Soonest expiry first (sort=not_after, the "expiring soon" view), with and
-- without an account, and the notAfter ranges of status and expiring_before.
CREATE INDEX IF NOT EXISTS certificates_not_after_idx ON certificates (not_after, serial);
CREATE INDEX IF NOT EXISTS certificates_account_not_after_idx ON certificates (account_id, not_after, serial);
