-- Durable cron schedules (docs/scheduling.md, "Cron schedules"): one row per
-- named schedule of a backend. The scheduler of every worker claims the rows
-- whose next_run_at is due (FOR UPDATE SKIP LOCKED), enqueues one task per
-- due row and moves next_run_at past now, in one transaction.
CREATE TABLE gotasks_schedule (
    backend      varchar(64)  COLLATE "C" NOT NULL,
    name         varchar(255) COLLATE "C" NOT NULL,
    task_name    varchar(255) NOT NULL,
    args         jsonb        NOT NULL DEFAULT 'null',
    queue        varchar(64)  NOT NULL,
    priority     integer      NOT NULL DEFAULT 0,
    cron_spec    text         NOT NULL DEFAULT '',
    every_us     bigint       NOT NULL DEFAULT 0,
    timezone     text         NOT NULL DEFAULT '',
    paused       boolean      NOT NULL DEFAULT false,
    next_run_at  timestamptz  NOT NULL,
    last_run_at  timestamptz,
    last_task_id varchar(64)  NOT NULL DEFAULT '',
    created_at   timestamptz  NOT NULL,
    updated_at   timestamptz  NOT NULL,
    PRIMARY KEY (backend, name)
);

--bun:split

-- The scheduler's round: the earliest due schedule of a backend.
CREATE INDEX gotasks_schedule_due_idx ON gotasks_schedule (backend, next_run_at) WHERE NOT paused;
