-- Development only: production migrations are forward-only.
DROP TRIGGER IF EXISTS audit_chain_insert_only ON audit_chain;
DROP TRIGGER IF EXISTS audit_events_insert_only ON audit_events;
DROP FUNCTION IF EXISTS audit_refuse_change();
DROP INDEX IF EXISTS audit_events_occurred_brin;
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_occurred_finite;
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_id_positive;
DROP TABLE IF EXISTS audit_chain;
