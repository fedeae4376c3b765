-- Finished tasks counted by queue and status (issue 17). The overview's counts
-- used to be an index-only scan of gotasks_task_queue_idx, an index that took
-- an entry at every completion: on SQLite, whose B-tree work per entry is
-- several times PostgreSQL's, it cost about a sixth of the worker's
-- throughput. The store now adds to these counters in the same transaction as
-- each statement that finishes a task or deletes or retries a finished one
-- (completion, rescue, cancel, retry, delete, prune), one row per queue and
-- status changed, and the overview reads them instead of counting rows.
CREATE TABLE gotasks_count (
    backend TEXT    NOT NULL,
    queue   TEXT    NOT NULL,
    status  TEXT    NOT NULL CHECK (status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')),
    n       INTEGER NOT NULL,
    PRIMARY KEY (backend, queue, status)
) WITHOUT ROWID;

--bun:split

-- The counts of the rows already there; the migration's transaction holds
-- the write lock, so no task finishes between the count and the commit.
INSERT INTO gotasks_count (backend, queue, status, n)
SELECT backend, queue, status, count(*) FROM gotasks_task
WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
GROUP BY backend, queue, status;

--bun:split

-- Lists by queue and status use the status index (or the primary key) and
-- filter by queue; see docs/database.md.
DROP INDEX gotasks_task_queue_idx;

--bun:split

-- The status index keeps the FAILED and CANCELLED tasks only, the ones an
-- operator looks for among many: SUCCESSFUL ones are most of the finished
-- rows, and a list of them walks the primary key, finding a page's worth
-- of them in about a page's worth of rows. An entry for each successful
-- task cost about a twelfth of the worker's throughput. It is keyed by id
-- alone: a list of either status or of both reads it in id order and
-- filters (a status column in the key would make SQLite look both up and
-- sort them).
DROP INDEX gotasks_task_status_idx;

--bun:split

CREATE INDEX gotasks_task_failed_idx ON gotasks_task (backend, id)
    WHERE status IN ('FAILED', 'CANCELLED');
