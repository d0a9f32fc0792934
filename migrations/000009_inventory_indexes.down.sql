-- Development only: production migrations are forward-only. The pg_trgm
-- extension stays: other objects may use it, and it costs nothing unused.
DROP INDEX IF EXISTS certificates_account_not_after_idx;
DROP INDEX IF EXISTS certificates_not_after_idx;
DROP INDEX IF EXISTS certificates_fingerprint_idx;
DROP INDEX IF EXISTS certificates_serial_pattern_idx;
DROP INDEX IF EXISTS certificates_cn_prefix_idx;
DROP INDEX IF EXISTS certificates_cn_trgm_idx;
