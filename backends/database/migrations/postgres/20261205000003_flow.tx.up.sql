-- Flow control (issue: per-queue limits): a global limit on the RUNNING tasks
-- of a queue, and a rate limit on its starts, both set at run time
-- (Backend.SetQueueLimit, Backend.SetQueueRateLimit) and enforced by the claim.
-- NULL means no limit; a queue without a row has none. The rate limit is a
-- fixed window: rate_window_start is the start of the current window (the
-- first claim after the previous one ended) and rate_window_count the tasks
-- claimed in it. Nullable columns and a constant default change the catalog
-- only: the table is not rewritten.
ALTER TABLE gotasks_queue
    ADD COLUMN max_running       integer,
    ADD COLUMN rate_limit        integer,
    ADD COLUMN rate_period_us    bigint,
    ADD COLUMN rate_window_start timestamptz,
    ADD COLUMN rate_window_count integer NOT NULL DEFAULT 0;
