-- Expiry notifications by webhook (internal/webhook, docs/DESIGN.md
-- "Expiry notifications"): each account may have one webhook, and pkid
-- POSTs a signed notice to it once for every certificate of the account
-- that comes within N days of its notAfter without having been renewed.

-- Salts for keys that pkid derives from PKID_KEY_PASSPHRASE, one per purpose
-- (internal/sealedkey Box). Random per deployment and shared by every node,
-- so that all nodes derive the same key and a precomputed table for one
-- deployment is worth nothing against another. The first node that needs
-- one inserts it; ON CONFLICT keeps the first.
CREATE TABLE sealing_salts (
    purpose    text        PRIMARY KEY CHECK (purpose ~ '^[a-z][a-z0-9-]{0,31}$'),
    salt       bytea       NOT NULL CHECK (length(salt) BETWEEN 16 AND 64),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One webhook per account. The secret is needed to sign, so it cannot be kept
-- as a hash: it is sealed (AES-256-GCM under a key derived from the
-- passphrase, bound to the account id), and shown in the clear only once, to
-- the administrator who created or rotated it. After a rotation the previous
-- secret keeps signing beside the new one until previous_expires_at, so that
-- receivers can switch without losing a notice.
CREATE TABLE account_webhooks (
    account_id             uuid        PRIMARY KEY REFERENCES accounts (id),
    url                    text        NOT NULL CHECK (length(url) BETWEEN 9 AND 2048),
    sealed_secret          bytea       NOT NULL CHECK (length(sealed_secret) BETWEEN 32 AND 512),
    previous_sealed_secret bytea       CHECK (length(previous_sealed_secret) BETWEEN 32 AND 512),
    previous_expires_at    timestamptz,
    -- NULL: the deployment's default (PKID_WEBHOOK_NOTIFY_DAYS).
    notify_days            integer     CHECK (notify_days BETWEEN 1 AND 365),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    updated_by             text        NOT NULL,
    secret_rotated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_sealed_secret IS NULL) = (previous_expires_at IS NULL))
);

-- The outbox: one row per notice, made by whichever node's job finds the
-- certificate first. UNIQUE (serial, kind) is what makes it once per
-- certificate whatever the number of nodes; a row is sent by the node that
-- holds its row lock (SELECT ... FOR UPDATE SKIP LOCKED), and its outcome is
-- written, with the audit event, in that same transaction.
CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    serial          text        NOT NULL REFERENCES certificates (serial),
    kind            text        NOT NULL CHECK (kind IN ('certificate.expiring')),
    account_id      uuid        NOT NULL REFERENCES accounts (id),
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 100),
    next_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    -- HTTP status of the last attempt, NULL when it got no answer.
    last_status     integer     CHECK (last_status BETWEEN 100 AND 599),
    last_error      text        CHECK (length(last_error) <= 512),
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    UNIQUE (serial, kind),
    CHECK ((state = 'pending') = (completed_at IS NULL))
);
-- What the job claims: pending rows whose time has come, soonest first.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- The admin API lists an account's deliveries, newest first.
CREATE INDEX webhook_deliveries_account_idx ON webhook_deliveries (account_id, created_at DESC, id);
