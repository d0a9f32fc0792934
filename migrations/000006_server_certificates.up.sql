-- The TLS listener's server certificates are issued by the same intermediate
-- and recorded like every other certificate (OCSP and the CRL cover them),
-- but belong to no account.
ALTER TABLE certificates ADD COLUMN profile text NOT NULL DEFAULT 'client' CHECK (profile IN ('client', 'server'));
ALTER TABLE certificates ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE certificates ADD CONSTRAINT certificates_profile_account_check CHECK ((profile = 'client') = (account_id IS NOT NULL));
