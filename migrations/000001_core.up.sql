-- pkid's core schema: accounts and their tokens, administrators, the CA
-- hierarchy, certificates, blocked keys and the audit trail. Every rule that
-- can live in the database does (unique serials, enum checks, foreign keys), so
-- that a bug above it cannot write an impossible row.

CREATE TABLE accounts (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan       text        NOT NULL CHECK (plan IN ('enterprise', 'standard')),
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE administrators (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- canonical form: trimmed and lower-cased, so that lockouts and lookups
    -- cannot be dodged with "Admin " or "ADMIN".
    username      text        NOT NULL UNIQUE CHECK (username = lower(btrim(username)) AND length(username) BETWEEN 1 AND 64),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Signing keys for pkid's own JWTs (account and admin API tokens). They are
-- kept apart from the CA keys; kid lets a retired key verify old tokens.
CREATE TABLE token_keys (
    kid           text        PRIMARY KEY,
    algorithm     text        NOT NULL CHECK (algorithm IN ('ES256')),
    encrypted_key bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);

-- Every token pkid mints, by jti, so that it can be revoked. A token is
-- accepted only while its row says so.
CREATE TABLE tokens (
    id         uuid        PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('account', 'admin')),
    account_id uuid        REFERENCES accounts (id),
    admin_id   uuid        REFERENCES administrators (id),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CHECK ((kind = 'account') = (account_id IS NOT NULL)),
    CHECK ((kind = 'admin') = (admin_id IS NOT NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX tokens_account_idx ON tokens (account_id) WHERE account_id IS NOT NULL;

-- The CA hierarchy: the root, issuing intermediates and delegated OCSP
-- signers. Private keys are stored as encrypted PKCS#8 (PBES2, scrypt) or, for
-- keys in an HSM, as a PKCS#11 reference; never in the clear.
CREATE TABLE issuers (
    id                 text        PRIMARY KEY,  -- hex SHA-256 of the certificate
    kind               text        NOT NULL CHECK (kind IN ('root', 'intermediate', 'ocsp')),
    parent_id          text        REFERENCES issuers (id),
    certificate        bytea       NOT NULL,
    encrypted_key      bytea,
    key_uri            text,
    subject            text        NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    retired_at         timestamptz,
    CHECK ((encrypted_key IS NULL) <> (key_uri IS NULL)),
    CHECK ((kind = 'root') = (parent_id IS NULL))
);
-- At most one current (unretired) issuer of each kind under a parent.
CREATE UNIQUE INDEX issuers_current_idx ON issuers (kind) WHERE retired_at IS NULL AND kind <> 'ocsp';

CREATE TABLE certificates (
    serial             text        PRIMARY KEY CHECK (serial ~ '^[1-9a-f][0-9a-f]{0,39}$'),
    issuer_id          text        NOT NULL REFERENCES issuers (id),
    account_id         uuid        NOT NULL REFERENCES accounts (id),
    state              text        NOT NULL CHECK (state IN ('pending', 'issued')),
    -- the certificate exactly as it was linted, signed by a throwaway key:
    -- the record of what the CA was about to sign, written before it signed.
    lint_der           bytea       NOT NULL,
    der                bytea,
    fingerprint_sha256 bytea       CHECK (length(fingerprint_sha256) = 32),
    spki_sha256        bytea       NOT NULL CHECK (length(spki_sha256) = 32),
    subject_cn         text        NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL CHECK (not_after > not_before),
    revoked_at         timestamptz,
    revocation_reason  smallint    CHECK (revocation_reason IN (0, 1, 2, 3, 4, 5, 9)),
    renewed_from       text        REFERENCES certificates (serial),
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer_id, serial),
    CHECK ((state = 'issued') = (der IS NOT NULL AND fingerprint_sha256 IS NOT NULL)),
    CHECK ((revoked_at IS NULL) = (revocation_reason IS NULL))
);
CREATE INDEX certificates_account_idx ON certificates (account_id, created_at DESC, serial DESC);
CREATE INDEX certificates_spki_idx ON certificates (spki_sha256);
CREATE INDEX certificates_revoked_idx ON certificates (issuer_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- Public keys that may never be certified again (revoked for keyCompromise).
CREATE TABLE blocked_keys (
    spki_sha256 bytea       PRIMARY KEY CHECK (length(spki_sha256) = 32),
    blocked_at  timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    serial      text        REFERENCES certificates (serial)
);

-- The audit trail: every security-relevant action, written in the same
-- transaction as the change it records. Insert-only.
CREATE TABLE audit_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('success', 'failure')),
    account_id  uuid,
    serial      text,
    request_id  text,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_account_idx ON audit_events (account_id, id DESC) WHERE account_id IS NOT NULL;
