-- Nova's migration records (os-migrations): one row per evacuation, cold migration and
-- resize of a server. `id` is Nova's integer id; AUTOINCREMENT never reuses one.
CREATE TABLE server_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    instance_uuid TEXT NOT NULL,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    migration_type TEXT NOT NULL,
    source_compute TEXT NOT NULL,
    dest_compute TEXT,
    status TEXT NOT NULL,
    old_flavor TEXT,
    new_flavor TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER
);

CREATE INDEX server_migrations_by_instance ON server_migrations (instance_uuid);
