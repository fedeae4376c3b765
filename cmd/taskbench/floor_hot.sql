-- taskbench --mode floor --floor-schema hot: floor.sql on a table made for
-- HOT completions (see floorVariantDDL in floor.go). The claim index's
-- predicate is the claimable column, which the claim clears and the
-- completion never touches, and no other index but the primary key is left:
-- the completion changes no indexed column and no column of an index
-- predicate, so PostgreSQL can update its rows in place (a heap-only tuple,
-- no index entry) while the page has room (fillfactor 25). Otherwise as
-- floor.sql (the same columns set, the same batches, -M prepared).
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
  RETURNING t.id, t.task_name, t.args)
SELECT COALESCE(array_agg(id), '{}') AS ids FROM u
\gset
UPDATE gotasks_task SET status = 'SUCCESSFUL', return_value = '{}', finished_at = now(),
  worker_id = NULL, heartbeat_at = NULL
WHERE id = ANY(:ids::text[]) AND worker_id = 'floor';
