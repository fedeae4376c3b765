DROP INDEX IF EXISTS gotasks_task_name_idx;

--bun:split

DROP INDEX IF EXISTS gotasks_task_queue_idx;

--bun:split

DROP INDEX IF EXISTS gotasks_task_status_idx;

--bun:split

DROP TABLE IF EXISTS gotasks_queue;

--bun:split

DROP TABLE IF EXISTS gotasks_worker;
