-- Task metadata (tasks.WithMetadata, enqueue middleware): a small JSON object
-- of strings, such as the traceparent of the request that enqueued the task.
-- NULL when a task has none, so that rows without metadata cost nothing.
ALTER TABLE gotasks_task ADD COLUMN metadata TEXT;
