-- The admin web page's sessions and login throttling, in Postgres so that
-- every pkid node behind a load balancer sees the same sessions and the same
-- failure counts (a throttle kept in one node's memory is divided by the
-- number of nodes).

-- One row per signed-in administrator session. The session id (256 random
-- bits) lives only in the browser's cookie; the database keeps its SHA-256,
-- so that a read of this table does not hand out live sessions. A session
-- ends at expires_at (absolute timeout) or when last_seen_at falls further
-- behind than the idle timeout, whichever is first; logout deletes the row.
CREATE TABLE admin_sessions (
    id_hash      bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    admin_id     uuid        NOT NULL REFERENCES administrators (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at),
    remote_addr  text        NOT NULL DEFAULT '' CHECK (length(remote_addr) <= 100),
    user_agent   text        NOT NULL DEFAULT '' CHECK (length(user_agent) <= 300)
);
CREATE INDEX admin_sessions_admin_idx ON admin_sessions (admin_id);
CREATE INDEX admin_sessions_expires_idx ON admin_sessions (expires_at);

-- Login attempts counted per key ("user:<canonical username>" or
-- "ip:<address>") in a fixed window that starts at the first attempt. A key
-- whose window has passed starts afresh; rows of passed windows are deleted
-- as new attempts arrive.
CREATE TABLE login_attempts (
    key          text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 300),
    attempts     integer     NOT NULL CHECK (attempts > 0),
    window_start timestamptz NOT NULL
);
CREATE INDEX login_attempts_window_idx ON login_attempts (window_start);

-- The audit page filters by actor and by action.
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id DESC);
CREATE INDEX audit_events_action_idx ON audit_events (action, id DESC);
