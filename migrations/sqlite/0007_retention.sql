-- Retention ([store] retention): the pruning loop deletes rows older than the cut-off in
-- batches, so each table it prunes needs its time indexed. These times only grow, so the
-- indexes are appended to at their right edge, not written at random pages.
CREATE INDEX seen_events_by_at ON seen_events (at);
CREATE INDEX alerts_by_received_at ON alerts (received_at);
CREATE INDEX outbox_by_delivered_at ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX outbox_by_failed_at ON outbox (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX console_messages_by_posted_at ON console_messages (posted_at);

-- Alert repeats are folded into a count on the incident instead of a timeline row each, so an
-- alert that fires every 30 s for a day does not make its incident's timeline 2,880 rows long.
ALTER TABLE incidents ADD COLUMN alert_repeats BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN last_alert_at BIGINT;
