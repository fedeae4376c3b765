-- Times are UTC, stored as fixed-width text 'YYYY-MM-DD HH:MM:SS.ffffff' so
-- that they compare and sort as text and SQLite's date functions read them.
CREATE TABLE gotasks_task (
    id                TEXT    NOT NULL PRIMARY KEY,
    task_name         TEXT    NOT NULL,
    status            TEXT    NOT NULL
        CHECK (status IN ('READY', 'RUNNING', 'SUCCESSFUL', 'FAILED', 'CANCELLED')),
    args              TEXT    NOT NULL,
    priority          INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    queue             TEXT    NOT NULL DEFAULT 'default',
    backend           TEXT    NOT NULL DEFAULT 'default',
    run_after         TEXT    NOT NULL,
    enqueued_at       TEXT    NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    last_attempted_at TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 25 CHECK (max_attempts > 0),
    timeout_ms        INTEGER NOT NULL DEFAULT 0,
    worker_ids        TEXT    NOT NULL DEFAULT '[]',
    errors            TEXT    NOT NULL DEFAULT '[]',
    return_value      TEXT,
    verbose_name      TEXT    NOT NULL DEFAULT '',
    creator           TEXT    NOT NULL DEFAULT '',
    repeat_ms         INTEGER NOT NULL DEFAULT 0,
    repeat_until      TEXT,
    worker_id         TEXT,
    heartbeat_at      TEXT
);

--bun:split

CREATE INDEX gotasks_task_claim_idx ON gotasks_task (backend, priority DESC, run_after, enqueued_at)
    WHERE status = 'READY';

--bun:split

CREATE INDEX gotasks_task_running_idx ON gotasks_task (backend, heartbeat_at)
    WHERE status = 'RUNNING';

--bun:split

CREATE INDEX gotasks_task_finished_idx ON gotasks_task (finished_at)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

CREATE INDEX gotasks_task_creator_idx ON gotasks_task (creator) WHERE creator <> '';
