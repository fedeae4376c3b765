ALTER TABLE gotasks_queue DROP COLUMN rate_window_count;

--bun:split

ALTER TABLE gotasks_queue DROP COLUMN rate_window_start;

--bun:split

ALTER TABLE gotasks_queue DROP COLUMN rate_period_us;

--bun:split

ALTER TABLE gotasks_queue DROP COLUMN rate_limit;

--bun:split

ALTER TABLE gotasks_queue DROP COLUMN max_running;
