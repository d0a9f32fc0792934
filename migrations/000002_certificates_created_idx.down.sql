DROP INDEX IF EXISTS certificates_created_idx;
