"""Background services inside every worker: the scheduler (cron) and the sweeper."""
