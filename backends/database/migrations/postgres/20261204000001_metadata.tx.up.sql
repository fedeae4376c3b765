-- Task metadata (tasks.WithMetadata, enqueue middleware): a small JSON object
-- of strings, such as the traceparent of the request that enqueued the task.
-- NULL when a task has none, so that rows without metadata cost nothing.
--
-- json, as args: the text is stored as written, and jsonb would refuse the
-- \u0000 escape a value may hold. A nullable column without a default is a
-- change of the catalog only: the table is not rewritten.
ALTER TABLE gotasks_task ADD COLUMN metadata json;
