-- Development only: production migrations are forward-only.
DROP INDEX IF EXISTS certificates_account_not_after_idx;
DROP TRIGGER IF EXISTS accounts_default_policy ON accounts;
DROP FUNCTION IF EXISTS account_policies_default();
DROP TABLE IF EXISTS account_policies;
