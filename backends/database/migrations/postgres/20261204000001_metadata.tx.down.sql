ALTER TABLE gotasks_task DROP COLUMN IF EXISTS metadata;
