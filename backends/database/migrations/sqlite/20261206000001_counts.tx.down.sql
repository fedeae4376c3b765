DROP INDEX gotasks_task_failed_idx;

--bun:split

CREATE INDEX gotasks_task_status_idx ON gotasks_task (backend, status, id)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

CREATE INDEX gotasks_task_queue_idx ON gotasks_task (backend, queue, status)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

DROP TABLE IF EXISTS gotasks_count;
