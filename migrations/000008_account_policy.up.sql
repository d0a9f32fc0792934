-- Per-account issuance policy (internal/policy/account.go, internal/ca/policy.go):
-- which names, URI SANs and keys an account may have certified, for how long,
-- and how many certificates it may hold and obtain per hour.
--
-- Every account has exactly one row. A trigger gives each new account the
-- defaults below, so that account creation needs to know nothing about
-- policy and the issuance path reads one row it can rely on: a missing row
-- is a broken invariant, and issuance fails closed on it.
--
-- Defaults for a new account: any name the CA accepts ('*'; administrators
-- narrow it to the account's own names), no URI SANs, every key type the CA
-- accepts, the CA's maximum validity (0), at most 1,000 active certificates
-- and 100 issuances in any hour. Accounts that exist when this migration runs
-- keep the behaviour they had, which had no quotas: their rows get 0 (no
-- cap) for both, so that an upgrade cannot start refusing a customer's
-- renewals. Administrators set their quotas afterwards.
CREATE TABLE account_policies (
    account_id              uuid        PRIMARY KEY REFERENCES accounts (id),
    -- '*', exact DNS names and '*.suffix' patterns, lower-case A-labels
    -- (checked in internal/policy; the database bounds the size).
    allowed_names           text[]      NOT NULL DEFAULT '{*}'
        CHECK (cardinality(allowed_names) <= 1000 AND array_position(allowed_names, NULL) IS NULL),
    allow_uri_sans          boolean     NOT NULL DEFAULT false,
    key_types               text[]      NOT NULL DEFAULT '{ecdsa-p256,ecdsa-p384,rsa-2048,rsa-3072,rsa-4096}'
        CHECK (cardinality(key_types) >= 1
               AND key_types <@ '{ecdsa-p256,ecdsa-p384,rsa-2048,rsa-3072,rsa-4096}'::text[]),
    -- 0: the CA's maximum (PKID_MAX_VALIDITY), which caps any value here.
    max_validity_days       integer     NOT NULL DEFAULT 0 CHECK (max_validity_days BETWEEN 0 AND 200),
    -- 0: no cap. Every issuance counts up to cap+1 rows (internal/store/policy.go),
    -- hence the bound.
    max_active_certificates integer     NOT NULL DEFAULT 1000 CHECK (max_active_certificates BETWEEN 0 AND 100000),
    max_issuances_per_hour  integer     NOT NULL DEFAULT 100 CHECK (max_issuances_per_hour BETWEEN 0 AND 100000),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    updated_by              text        NOT NULL DEFAULT 'system'
);

INSERT INTO account_policies (account_id, max_active_certificates, max_issuances_per_hour)
SELECT id, 0, 0 FROM accounts;

CREATE FUNCTION account_policies_default() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_policies (account_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_default_policy
    AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION account_policies_default();

-- The active-certificate quota counts an account's unrevoked, unexpired
-- certificates, walking this index from the account's first unexpired
-- notAfter and stopping just past the cap. The inventory search's migration
-- (000009) declares the very same index, for its expiry order: both say IF
-- NOT EXISTS with the same name and definition, so whichever runs first
-- creates it and the hot table carries one index, not two. The hourly quota
-- walks certificates_account_idx (account_id, created_at DESC) the same way.
CREATE INDEX IF NOT EXISTS certificates_account_not_after_idx ON certificates (account_id, not_after, serial);
