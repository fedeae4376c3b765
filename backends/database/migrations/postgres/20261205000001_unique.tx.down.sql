DROP INDEX IF EXISTS gotasks_task_unique;
ALTER TABLE gotasks_task DROP COLUMN IF EXISTS unique_states;
ALTER TABLE gotasks_task DROP COLUMN IF EXISTS unique_key;
