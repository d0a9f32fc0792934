-- Development only: production migrations are forward-only.
DELETE FROM ocsp_responses WHERE serial IN (SELECT serial FROM certificates WHERE profile = 'server');
DELETE FROM certificates WHERE profile = 'server';
ALTER TABLE certificates DROP CONSTRAINT IF EXISTS certificates_profile_account_check;
ALTER TABLE certificates ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE certificates DROP COLUMN IF EXISTS profile;
