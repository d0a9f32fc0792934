-- Development only: production migrations are forward-only.
ALTER TABLE certificates RESET (fillfactor);
CREATE INDEX IF NOT EXISTS certificates_fingerprint_idx ON certificates (fingerprint_sha256)
    WHERE fingerprint_sha256 IS NOT NULL;
DROP TABLE IF EXISTS certificate_fingerprints;
