-- Unique tasks (tasks.WithUnique): unique_key is the hex SHA-256 key the
-- core computed, unique_states the bit mask of the statuses in which the
-- task blocks another with its key (READY 1, RUNNING 2, SUCCESSFUL 4,
-- FAILED 8, CANCELLED 16). Both are NULL for the tasks that are not unique,
-- which the partial index leaves out: they pay nothing.
--
-- The index holds the rows whose current status is among their own
-- statuses: at most one per (backend, unique_key). Enqueue inserts with
-- ON CONFLICT … DO NOTHING on the same predicate (uniquePredicate in
-- store_sql.go must stay identical to it).
ALTER TABLE gotasks_task ADD COLUMN unique_key text;
ALTER TABLE gotasks_task ADD COLUMN unique_states smallint;
CREATE UNIQUE INDEX gotasks_task_unique ON gotasks_task (backend, unique_key)
    WHERE unique_key IS NOT NULL AND (unique_states & CASE status WHEN 'READY' THEN 1 WHEN 'RUNNING' THEN 2
        WHEN 'SUCCESSFUL' THEN 4 WHEN 'FAILED' THEN 8 WHEN 'CANCELLED' THEN 16 ELSE 0 END) <> 0;
