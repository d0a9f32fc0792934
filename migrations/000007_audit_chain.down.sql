-- Development only: production migrations are forward-only.
DROP TRIGGER IF EXISTS audit_chain_insert_only ON audit_chain;
DROP TRIGGER IF EXISTS audit_events_insert_only ON audit_events;
DROP FUNCTION IF EXISTS audit_refuse_change();
DROP INDEX IF EXISTS audit_events_occurred_brin;
DROP TABLE IF EXISTS audit_chain;
