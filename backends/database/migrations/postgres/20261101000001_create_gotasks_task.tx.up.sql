-- id, queue and backend are ASCII (UUIDv7 ids, names): the "C" collation
-- compares bytes, cheaper than a locale's rules in every B-tree lookup, and
-- orders UUIDv7 ids by time.
CREATE TABLE gotasks_task (
    id                varchar(64)  COLLATE "C" PRIMARY KEY,
    task_name         varchar(255) NOT NULL,
    status            varchar(16)  NOT NULL
        CHECK (status IN ('READY', 'RUNNING', 'SUCCESSFUL', 'FAILED', 'CANCELLED')),
    args              json         NOT NULL,
    priority          smallint     NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    queue             varchar(64)  COLLATE "C" NOT NULL DEFAULT 'default',
    backend           varchar(64)  COLLATE "C" NOT NULL DEFAULT 'default',
    run_after         timestamptz  NOT NULL,
    enqueued_at       timestamptz  NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    last_attempted_at timestamptz,
    attempts          integer      NOT NULL DEFAULT 0,
    max_attempts      integer      NOT NULL DEFAULT 25 CHECK (max_attempts > 0),
    timeout_ms        bigint       NOT NULL DEFAULT 0,
    worker_ids        jsonb        NOT NULL DEFAULT '[]',
    errors            jsonb        NOT NULL DEFAULT '[]',
    return_value      json,
    verbose_name      varchar(255) NOT NULL DEFAULT '',
    creator           varchar(255) NOT NULL DEFAULT '',
    repeat_ms         bigint       NOT NULL DEFAULT 0,
    repeat_until      timestamptz,
    worker_id         varchar(255),
    heartbeat_at      timestamptz
);

--bun:split

-- Serves the claim: READY rows of one backend in claim order.
CREATE INDEX gotasks_task_claim_idx ON gotasks_task (backend, priority DESC, run_after, enqueued_at)
    WHERE status = 'READY';

--bun:split

-- Serves rescue and heartbeats.
CREATE INDEX gotasks_task_running_idx ON gotasks_task (backend, heartbeat_at)
    WHERE status = 'RUNNING';

--bun:split

-- Serves prune.
CREATE INDEX gotasks_task_finished_idx ON gotasks_task (finished_at)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

CREATE INDEX gotasks_task_creator_idx ON gotasks_task (creator) WHERE creator <> '';

--bun:split

-- A queue table churns: every task is inserted, updated two or three times and
-- later pruned. Vacuum and analyze it far more often than the defaults so that
-- dead index entries and stale statistics do not build up.
ALTER TABLE gotasks_task SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0
);
