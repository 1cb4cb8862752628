-- Nova's server groups and their members. A server is in at most one group (the create's
-- `group` hint); a group's deletion leaves its members in none.
CREATE TABLE server_groups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    max_server_per_host INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX server_groups_by_project ON server_groups (project_id, seq);

CREATE TABLE server_group_members (
    -- Join order, which the API lists members in.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL REFERENCES server_groups (id) ON DELETE CASCADE,
    server_id TEXT NOT NULL,
    UNIQUE (group_id, server_id)
);
