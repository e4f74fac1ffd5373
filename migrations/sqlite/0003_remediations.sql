-- Remediation requests, the votes on them, and the audit log of everything they did.
CREATE TABLE remediation_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id BIGINT REFERENCES incidents (id),
    topic TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    -- Exactly what will run, arguments filled in, secrets masked.
    command TEXT NOT NULL,
    -- Binds approvals to this exact action: when the runbook changes, the request is stale.
    action_hash TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approvals_needed BIGINT NOT NULL,
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread TEXT,
    message TEXT,
    -- pending → approved → running → succeeded | failed; or denied, expired, stale
    state TEXT NOT NULL DEFAULT 'pending',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    result TEXT
);
CREATE INDEX remediation_requests_pending ON remediation_requests (expires_at) WHERE state = 'pending';

CREATE TABLE remediation_votes (
    request_id BIGINT NOT NULL REFERENCES remediation_requests (id),
    voter TEXT NOT NULL,
    decision TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (request_id, voter)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    request_id BIGINT,
    incident_id BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_by_request ON audit_log (request_id);
