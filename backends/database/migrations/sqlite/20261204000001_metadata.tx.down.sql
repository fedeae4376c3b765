ALTER TABLE gotasks_task DROP COLUMN metadata;
