ALTER TABLE gotasks_queue
    DROP COLUMN IF EXISTS max_running,
    DROP COLUMN IF EXISTS rate_limit,
    DROP COLUMN IF EXISTS rate_period_us,
    DROP COLUMN IF EXISTS rate_window_start,
    DROP COLUMN IF EXISTS rate_window_count;
