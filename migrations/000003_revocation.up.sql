-- Revocation status as relying parties see it: the pre-signed OCSP response
-- of every certificate and the CRLs, stored so that every node serves the
-- same answers and a restart loads rather than re-signs.

-- One pre-signed OCSP response (SHA-1 CertID, the form RFC 5019 clients and
-- nginx send) per certificate. It is written with the pending row, before the
-- certificate is signed, so a certificate never exists without an answer;
-- replaced on revocation (in the revoking transaction) and re-signed ahead of
-- next_update. version changes with every write: the re-signing job updates a
-- response only if no one replaced it since it was read.
CREATE TABLE ocsp_responses (
    serial      text        PRIMARY KEY REFERENCES certificates (serial),
    issuer_id   text        NOT NULL REFERENCES issuers (id),
    der         bytea       NOT NULL,
    this_update timestamptz NOT NULL,
    next_update timestamptz NOT NULL CHECK (next_update > this_update),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ocsp_responses_next_update_idx ON ocsp_responses (next_update);
CREATE INDEX ocsp_responses_updated_idx ON ocsp_responses (updated_at);

-- Every CRL pkid signed, per issuer. The newest is served. Numbers come from
-- one sequence, so they grow across issuers and nodes (RFC 5280 §5.2.3).
CREATE SEQUENCE crl_number_seq AS bigint START 1;
CREATE TABLE crls (
    issuer_id   text        NOT NULL REFERENCES issuers (id),
    number      bigint      NOT NULL CHECK (number > 0),
    der         bytea       NOT NULL,
    this_update timestamptz NOT NULL,
    next_update timestamptz NOT NULL CHECK (next_update > this_update),
    entries     integer     NOT NULL CHECK (entries >= 0),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (issuer_id, number)
);

-- The CRL job finds revoked certificates by issuer and expiry.
CREATE INDEX certificates_revoked_expiry_idx ON certificates (issuer_id, not_after) WHERE revoked_at IS NOT NULL;
-- The key-compromise sweep finds unexpired certificates by key.
DROP INDEX certificates_spki_idx;
CREATE INDEX certificates_spki_idx ON certificates (spki_sha256, not_after);
