-- Follow-ups and checklist items (SPEC §13): things to do about an incident, each with an owner
-- and a due time. A due, open item reminds its owner once: `reminded_at` is set in the same
-- transaction that queues the reminder, so a restart or a second replica never reminds twice.
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    -- NULL for a follow-up; the [[checklists]] name for a checklist's item.
    checklist TEXT,
    position BIGINT NOT NULL DEFAULT 0,
    text TEXT NOT NULL,
    -- `slack:U1`, `group:leads`, `schedule:primary`; NULL for nobody in particular.
    owner TEXT,
    due_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    done_at BIGINT,
    done_by TEXT,
    reminded_at BIGINT
);
CREATE INDEX tasks_by_incident ON tasks (incident_id, id);
CREATE INDEX tasks_due ON tasks (due_at) WHERE done_at IS NULL AND reminded_at IS NULL AND due_at IS NOT NULL;
-- A checklist opens once per incident, however many chat lanes deliver its trigger.
CREATE UNIQUE INDEX tasks_checklist_item ON tasks (incident_id, checklist, position) WHERE checklist IS NOT NULL;

-- Where each incident's checklist message is on each platform, to edit it as items are ticked.
CREATE TABLE checklist_messages (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    checklist TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (incident_id, checklist, platform)
);
