-- Incidents, their timelines, escalation timers and the notification outbox.
-- Times are milliseconds since the Unix epoch (UTC); JSON is stored as text.
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    impact TEXT,
    commander TEXT,
    fingerprint TEXT,
    policy TEXT,
    declared_by TEXT,
    started_at BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    resolved_at BIGINT,
    resolved_by TEXT,
    root_cause TEXT,
    fix TEXT,
    prevention TEXT,
    chat TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX incidents_by_status ON incidents (status, id);
CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint) WHERE fingerprint IS NOT NULL;

CREATE TABLE timeline (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX timeline_by_incident ON timeline (incident_id, id);

-- One row per escalation step to fire: pending → fired | skipped | cancelled.
CREATE TABLE timers (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    policy TEXT NOT NULL,
    step BIGINT NOT NULL,
    round BIGINT NOT NULL,
    fire_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    done_at BIGINT,
    done_by TEXT
);
CREATE INDEX timers_due ON timers (fire_at) WHERE state = 'pending';
CREATE INDEX timers_by_incident ON timers (incident_id) WHERE state = 'pending';

-- Notifications for the chat adapters to deliver.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT REFERENCES incidents (id),
    kind TEXT NOT NULL,
    recipients TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
