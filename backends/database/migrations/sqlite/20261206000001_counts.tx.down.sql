CREATE INDEX gotasks_task_queue_idx ON gotasks_task (backend, queue, status)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

--bun:split

DROP TABLE IF EXISTS gotasks_count;
