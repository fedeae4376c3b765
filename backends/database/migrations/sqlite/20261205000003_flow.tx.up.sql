-- Flow control (issue: per-queue limits): see the PostgreSQL migration of the
-- same name. NULL means no limit; times are text, like every time here.
ALTER TABLE gotasks_queue ADD COLUMN max_running INTEGER;

--bun:split

ALTER TABLE gotasks_queue ADD COLUMN rate_limit INTEGER;

--bun:split

ALTER TABLE gotasks_queue ADD COLUMN rate_period_us INTEGER;

--bun:split

ALTER TABLE gotasks_queue ADD COLUMN rate_window_start TEXT;

--bun:split

ALTER TABLE gotasks_queue ADD COLUMN rate_window_count INTEGER NOT NULL DEFAULT 0;
