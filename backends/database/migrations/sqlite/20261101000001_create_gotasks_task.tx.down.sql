DROP TABLE IF EXISTS gotasks_task;
