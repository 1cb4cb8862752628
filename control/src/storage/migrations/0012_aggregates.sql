-- Nova's host aggregates: named sets of hosts (box names) with metadata. The availability
-- zone is the metadata key `availability_zone`, as in Nova. `id` is Nova's integer id;
-- AUTOINCREMENT keeps it from being reused after a delete.
CREATE TABLE aggregates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER
);

CREATE TABLE aggregate_hosts (
    aggregate_id INTEGER NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, host)
);

CREATE TABLE aggregate_metadata (
    aggregate_id INTEGER NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, key)
);
