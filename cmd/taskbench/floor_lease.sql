-- taskbench --mode floor --floor-schema lease: floor_hot.sql plus what a
-- HOT design needs to find running tasks without an index on the task
-- table: the claim inserts a lease row per task into gotasks_lease (task
-- id, worker id; a rescuer would look for the leases of dead workers
-- there) and the completion deletes them, in the same statements.
WITH c AS MATERIALIZED (
  SELECT id FROM gotasks_task
  WHERE claimable AND backend = 'taskbench' AND run_after <= now()
  ORDER BY priority DESC, run_after, enqueued_at
  LIMIT :batch
  FOR UPDATE SKIP LOCKED),
u AS (
  UPDATE gotasks_task t SET claimable = false, status = 'RUNNING', attempts = t.attempts + 1,
    started_at = COALESCE(t.started_at, now()), last_attempted_at = now(), worker_id = 'floor',
    heartbeat_at = now(), worker_ids = t.worker_ids || to_jsonb('floor'::text)
  FROM c WHERE t.id = c.id
  RETURNING t.id, t.task_name, t.args),
l AS (INSERT INTO gotasks_lease (task_id, worker_id) SELECT id, 'floor' FROM u)
SELECT COALESCE(array_agg(id), '{}') AS ids FROM u
\gset
WITH d AS (DELETE FROM gotasks_lease WHERE task_id = ANY(:ids::text[]))
UPDATE gotasks_task SET status = 'SUCCESSFUL', return_value = '{}', finished_at = now(),
  worker_id = NULL, heartbeat_at = NULL
WHERE id = ANY(:ids::text[]) AND worker_id = 'floor';
