DROP INDEX issuers_current_ocsp_idx;
DROP INDEX issuers_current_idx;
CREATE UNIQUE INDEX issuers_current_idx ON issuers (kind) WHERE retired_at IS NULL AND kind <> 'ocsp';
ALTER TABLE issuers DROP CONSTRAINT issuers_superseded_intermediate;
ALTER TABLE issuers DROP COLUMN superseded_at;
DROP INDEX issuers_generation_idx;
ALTER TABLE issuers DROP COLUMN generation;
