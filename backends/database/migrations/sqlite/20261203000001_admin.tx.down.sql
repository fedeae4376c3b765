DROP INDEX gotasks_task_finished_idx;

--bun:split

CREATE INDEX gotasks_task_finished_idx ON gotasks_task (finished_at)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

DROP INDEX IF EXISTS gotasks_task_verbose_idx;

--bun:split

DROP INDEX IF EXISTS gotasks_task_queue_idx;

--bun:split

DROP INDEX IF EXISTS gotasks_task_status_idx;

--bun:split

DROP TABLE IF EXISTS gotasks_queue;

--bun:split

DROP TABLE IF EXISTS gotasks_worker;
