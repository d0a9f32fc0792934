-- The audit trail's hash chain (docs/AUDIT.md, internal/audit).
--
-- audit_events stays exactly as the hot path writes it: no new column, no
-- extra statement, no lock. A background linker on every node (one at a time,
-- under a transaction-scoped advisory lock) walks the events in id order and
-- appends one row here per event: the SHA-256 of the event's canonical
-- content, and the chain hash SHA-256(previous chain hash || content hash).
-- Ids that were handed out but never committed (rolled-back transactions,
-- sequence values lost in a crash) are linked too, as gap rows covering a
-- range, so that a row appearing later under such an id breaks the chain.
--
-- The links live in a table of their own rather than in columns of
-- audit_events so that audit_events is never updated at all: the trigger
-- below can refuse every UPDATE, the service's role needs no UPDATE grant on
-- it, and the linker's writes are appends that do not bloat the hot table or
-- its four indexes.
CREATE TABLE audit_chain (
    -- first audit_events id the link covers; for an event, its id
    id           bigint      PRIMARY KEY,
    -- last id covered: id itself for an event, the end of the range for a gap
    last_id      bigint      NOT NULL,
    gap          boolean     NOT NULL,
    content_hash bytea       NOT NULL CHECK (length(content_hash) = 32),
    chain_hash   bytea       NOT NULL CHECK (length(chain_hash) = 32),
    -- bookkeeping, not hashed
    linked_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (id >= 1 AND last_id >= id),
    CHECK (gap OR last_id = id)
);

-- Two rules the chain relies on, cheap to check on insert: ids start at 1 (an
-- id below would lie outside the chain), and times are finite (the canonical
-- encoding writes microseconds in UTC; 'infinity' has none, and an event
-- that could not be encoded would hold the linker at it). NOT VALID: rows
-- written before this migration are not rescanned; the chain covers them
-- anyway, and pkid never wrote either.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_id_positive CHECK (id >= 1) NOT VALID;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_occurred_finite CHECK (isfinite(occurred_at)) NOT VALID;

-- The admin API's time-range filter. occurred_at grows with id (it is the
-- database's clock, or the node's clock at the same moment), which is the
-- case a BRIN index is made for: a few pages, and next to nothing per insert.
CREATE INDEX audit_events_occurred_brin ON audit_events USING brin (occurred_at);

-- Insert-only, enforced in the database: every UPDATE, DELETE and TRUNCATE
-- of the trail or of its chain is refused, whoever runs it. The owner (or a
-- superuser) can still drop or disable these triggers; that is what the hash
-- chain is for, since rewriting an event afterwards breaks every link after
-- it (`pkid audit verify`).
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pkid: % on % refused: the audit trail is insert-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'see docs/AUDIT.md';
END
$$;
CREATE TRIGGER audit_events_insert_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_chain_insert_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- PUBLIC never had these privileges; revoking says so in the schema, and
-- keeps a later GRANT ... TO PUBLIC from being the way in. A deployment with
-- a dedicated role grants it INSERT and SELECT only (docs/AUDIT.md).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_chain FROM PUBLIC;
