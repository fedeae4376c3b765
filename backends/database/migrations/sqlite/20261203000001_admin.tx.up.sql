-- The admin API (issue 14): live workers, paused queues, and the indexes that
-- keep the operator's list and overview fast over millions of finished rows.

-- Each worker registers itself here when it starts, refreshes heartbeat_at and
-- running with every heartbeat, and deletes its row when it stops; a row whose
-- heartbeat is older than the rescue delay is a worker that vanished, and the
-- rescuer of any worker deletes it.
CREATE TABLE gotasks_worker (
    id           TEXT    NOT NULL PRIMARY KEY,
    backend      TEXT    NOT NULL,
    host         TEXT    NOT NULL DEFAULT '',
    pid          INTEGER NOT NULL DEFAULT 0,
    queues       TEXT    NOT NULL DEFAULT '[]',
    concurrency  INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0
);

--bun:split

-- A row per paused (or once paused) queue; workers do not claim from a queue
-- whose paused_at is set.
CREATE TABLE gotasks_queue (
    backend   TEXT NOT NULL,
    name      TEXT NOT NULL,
    paused_at TEXT,
    PRIMARY KEY (backend, name)
);

--bun:split

-- The two admin indexes below cover finished tasks only, the ones an
-- operator's lists and counts are about by the million. A task enters each of
-- them once, when it finishes: a full index would take an entry at each of a
-- task's updates (every one moves the row); four full ones cost a third of the
-- worker's throughput. READY and RUNNING tasks are listed and counted through
-- the claim and running indexes. Lists by queue or task name walk the status
-- index or the primary key in id order and filter (see docs/database.md).

-- Lists by status, newest or oldest first (ids are UUIDv7: time-ordered).
CREATE INDEX gotasks_task_status_idx ON gotasks_task (backend, status, id)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

-- The overview's counts by queue and status (an index-only scan), and lists
-- by queue and status.
CREATE INDEX gotasks_task_queue_idx ON gotasks_task (backend, queue, status)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

-- Lists by verbose name (like gotasks_task_creator_idx: only the tasks that
-- have one).
CREATE INDEX gotasks_task_verbose_idx ON gotasks_task (verbose_name) WHERE verbose_name <> '';

--bun:split

-- The overview's chart (tasks finished per minute by status) reads only this
-- index: the prune index, with the columns the chart needs after finished_at.
DROP INDEX gotasks_task_finished_idx;

--bun:split

CREATE INDEX gotasks_task_finished_idx ON gotasks_task (finished_at, backend, status)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');
