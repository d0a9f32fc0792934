-- Issuance writes each certificate twice: the pending row before the
-- signature, then the signed DER, its fingerprint and state 'issued' after
-- (MarkIssued). The second write could only be a new heap tuple with a new
-- entry in every index of certificates (a dozen, one of them the common
-- name's trigram GIN index), because one of the columns it sets,
-- fingerprint_sha256, was indexed. The fingerprint lookup moves here, to a
-- narrow table that MarkIssued appends to in the same statement, so that no
-- column the second write sets is indexed and Postgres can make it a HOT
-- (heap-only) update: the new version on the same page, no index touched.
-- docs/BENCHMARKS.md has the before and after.
CREATE TABLE certificate_fingerprints (
    fingerprint_sha256 bytea PRIMARY KEY CHECK (length(fingerprint_sha256) = 32),
    serial             text  NOT NULL REFERENCES certificates (serial)
);

INSERT INTO certificate_fingerprints (fingerprint_sha256, serial)
    SELECT fingerprint_sha256, serial FROM certificates WHERE fingerprint_sha256 IS NOT NULL;

DROP INDEX IF EXISTS certificates_fingerprint_idx;

-- A HOT update needs room for the new version on the row's own page. Rows
-- are written pending (about 1 KB: the linted certificate) and grow by the
-- signed DER (another ~0.6 KB) a few milliseconds later, while later rows
-- are still being inserted on the same page. Filling pages only half with
-- inserts leaves that room: with 64 concurrent issuances pkid-bench saw
-- 94-98% of MarkIssued's updates made HOT at 50, none at the default 100.
-- The table takes up to twice the space it would; for a CA that is cheap.
-- Pages written before this migration keep their content.
ALTER TABLE certificates SET (fillfactor = 50);
