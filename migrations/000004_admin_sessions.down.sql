DROP INDEX IF EXISTS audit_events_action_idx;
DROP INDEX IF EXISTS audit_events_actor_idx;
DROP TABLE IF EXISTS login_attempts;
DROP TABLE IF EXISTS admin_sessions;
