-- Development only: production migrations are forward-only.
DROP TABLE IF EXISTS audit_events, blocked_keys, certificates, issuers, tokens, token_keys, administrators, accounts;
