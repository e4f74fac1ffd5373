-- The web console's messages: it is a chat platform of its own, so its history outlives restarts
-- and its message ids never repeat (incidents remember their console thread by id).
CREATE TABLE console_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    -- The id of the thread's first message, for replies.
    thread TEXT,
    author TEXT NOT NULL,
    -- The platform-neutral message (blocks, and a file for long output) as JSON.
    body TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    edited_at BIGINT
);
CREATE INDEX console_messages_by_channel ON console_messages (channel, id);
