-- taskbench --mode floor: the database's own floor for a task, run by
-- pgbench -n -M prepared -c 1 -t <transactions> -D batch=<claim batch>,
-- with search_path set to the run's fresh schema (PGOPTIONS). One pgbench
-- transaction is one claim batch: a claim statement and a completion
-- statement, each its own transaction (autocommit), as the worker's are.
--
-- The claim is the worker's (pgStore.claimQuery in
-- backends/database/store_postgres.go) for the benchmark's backend and all
-- queues, and sets the same columns; it leaves out the paused-queue filter
-- (a probe of an empty gotasks_queue). The completion sets what the worker's
-- completion sets for a SUCCESSFUL no-op (return_value '{}', as Noop's
-- result is stored), found by id = ANY and guarded by worker_id, as there;
-- it leaves out the pg_notify of the finished ids (no WAL) and the per-task
-- jsonb of outcomes. Times come from now() rather than parameters.
--
-- :batch comes from -D batch=N (a \set here would override it). The claimed
-- ids go from the claim to the completion through \gset: array_agg makes one
-- text value, '{id1,id2,…}', and -M prepared passes :ids as a parameter,
-- cast back with ::text[]. (-M simple would paste it into the SQL unquoted,
-- a syntax error: the script needs -M prepared.) COALESCE keeps :ids an
-- empty array when a claim finds nothing.
WITH c AS MATERIALIZED (
  SELECT id FROM gotasks_task
  WHERE status = 'READY' AND backend = 'taskbench' AND run_after <= now()
  ORDER BY priority DESC, run_after, enqueued_at
  LIMIT :batch
  FOR UPDATE SKIP LOCKED),
u AS (
  UPDATE gotasks_task t SET status = 'RUNNING', attempts = t.attempts + 1,
    started_at = COALESCE(t.started_at, now()), last_attempted_at = now(), worker_id = 'floor',
    heartbeat_at = now(), worker_ids = t.worker_ids || to_jsonb('floor'::text)
  FROM c WHERE t.id = c.id
  RETURNING t.id, t.task_name, t.args)
SELECT COALESCE(array_agg(id), '{}') AS ids FROM u
\gset
UPDATE gotasks_task SET status = 'SUCCESSFUL', return_value = '{}', finished_at = now(),
  worker_id = NULL, heartbeat_at = NULL
WHERE id = ANY(:ids::text[]) AND worker_id = 'floor';
