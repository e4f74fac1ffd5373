-- Every alert received, stored before the webhook is answered.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at BIGINT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    incident_id BIGINT REFERENCES incidents (id),
    payload TEXT NOT NULL
);
CREATE INDEX alerts_by_fingerprint ON alerts (fingerprint, id);

-- At most one open incident per fingerprint, even with several replicas ingesting at once.
CREATE UNIQUE INDEX incidents_open_fingerprint ON incidents (fingerprint) WHERE fingerprint IS NOT NULL AND status <> 'resolved';
