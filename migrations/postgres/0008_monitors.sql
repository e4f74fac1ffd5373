-- One row per [[monitors]] entry: when it runs next, who holds its run (a lease, so of several
-- replicas one runs it, and a run whose process died is taken again once the lease is over),
-- its current streak of verdicts, its last run and the incident it opened.
CREATE TABLE monitors (
    name TEXT PRIMARY KEY,
    -- The schedule as written (`every 1m`, `cron */5 * * * * Europe/Berlin`): when it changes,
    -- the monitor is scheduled anew.
    schedule TEXT NOT NULL,
    next_run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    streak_verdict TEXT,
    streak_count BIGINT NOT NULL DEFAULT 0,
    last_verdict TEXT,
    last_run_at BIGINT,
    incident_id BIGINT REFERENCES incidents (id),
    runs BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX monitors_due ON monitors (next_run_at);
