-- Development only: production migrations are forward-only.
DROP INDEX IF EXISTS certificates_renewed_from_idx;
