-- Development only: production migrations are forward-only.
DROP INDEX IF EXISTS certificates_spki_idx;
CREATE INDEX certificates_spki_idx ON certificates (spki_sha256);
DROP INDEX IF EXISTS certificates_revoked_expiry_idx;
DROP TABLE IF EXISTS crls;
DROP SEQUENCE IF EXISTS crl_number_seq;
DROP TABLE IF EXISTS ocsp_responses;
