-- Intermediate rollover (`pkid ca rotate`): several issuing intermediates are
-- live at once. The newest issues; the older ones no longer issue but keep
-- signing their CRL and their OCSP signer's renewals until their last
-- certificate has expired, and are then retired.
--
-- generation numbers the intermediates of a hierarchy, 1 for the one `pkid
-- init` made. It names an intermediate in URLs (its CRL is /crl/{generation})
-- so it is never reused, even after retirement. Other kinds keep the default.
ALTER TABLE issuers ADD COLUMN generation integer NOT NULL DEFAULT 1 CHECK (generation >= 1);
CREATE UNIQUE INDEX issuers_generation_idx ON issuers (generation) WHERE kind = 'intermediate';

-- superseded_at is when a newer intermediate took over issuance. The one
-- intermediate that is neither superseded nor retired issues; two `pkid ca
-- rotate` at once cannot both supersede it (the second finds it superseded),
-- and this index refuses two current intermediates whatever the code does.
ALTER TABLE issuers ADD COLUMN superseded_at timestamptz;
ALTER TABLE issuers ADD CONSTRAINT issuers_superseded_intermediate
    CHECK (superseded_at IS NULL OR kind = 'intermediate');
DROP INDEX issuers_current_idx;
CREATE UNIQUE INDEX issuers_current_idx ON issuers (kind)
    WHERE retired_at IS NULL AND superseded_at IS NULL AND kind <> 'ocsp';

-- Each live intermediate has its own delegated OCSP signer (RFC 6960
-- §4.2.2.2: the responder certificate is issued by the CA that issued the
-- certificate in question): at most one current signer per intermediate.
CREATE UNIQUE INDEX issuers_current_ocsp_idx ON issuers (parent_id)
    WHERE retired_at IS NULL AND kind = 'ocsp';
