-- Chat: where each incident lives on each platform, events already handled, and outbox retries.
CREATE TABLE chat_refs (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (platform, channel, message)
);
CREATE INDEX chat_refs_by_incident ON chat_refs (incident_id);

-- Keys of platform deliveries already handled (Events API retries, repeated envelopes).
CREATE TABLE seen_events (
    key TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);

ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
-- Parts already delivered (e.g. "slack:thread", "slack:dm:U1"), so a retry repeats none of them.
ALTER TABLE outbox ADD COLUMN progress TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN failed_at BIGINT;
