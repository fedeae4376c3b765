DROP INDEX IF EXISTS gotasks_task_unique;
ALTER TABLE gotasks_task DROP COLUMN unique_states;
ALTER TABLE gotasks_task DROP COLUMN unique_key;
