DROP TABLE IF EXISTS gotasks_schedule;
