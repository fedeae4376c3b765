-- Durable cron schedules (docs/scheduling.md, "Cron schedules"): one row per
-- named schedule of a backend. The scheduler of every worker claims the rows
-- whose next_run_at is due in a write transaction (a guarded UPDATE),
-- enqueues one task per due row and moves next_run_at past now.
CREATE TABLE gotasks_schedule (
    backend      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    task_name    TEXT    NOT NULL,
    args         TEXT    NOT NULL DEFAULT 'null',
    queue        TEXT    NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    cron_spec    TEXT    NOT NULL DEFAULT '',
    every_us     INTEGER NOT NULL DEFAULT 0,
    timezone     TEXT    NOT NULL DEFAULT '',
    paused       INTEGER NOT NULL DEFAULT 0,
    next_run_at  TEXT    NOT NULL,
    last_run_at  TEXT,
    last_task_id TEXT    NOT NULL DEFAULT '',
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (backend, name)
);

--bun:split

-- The scheduler's round: the earliest due schedule of a backend.
CREATE INDEX gotasks_schedule_due_idx ON gotasks_schedule (backend, next_run_at) WHERE NOT paused;
