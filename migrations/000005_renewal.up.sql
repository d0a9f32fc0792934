-- A certificate is renewed at most once: of two concurrent renewals exactly
-- one succeeds (SECURITY.md R-06), and a renewal can be found from its
-- predecessor.
CREATE UNIQUE INDEX certificates_renewed_from_idx ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;
