-- Nova servers, the progress of their multi-step operations, and the scheduler's claims.
--
-- `seq` orders servers (Nova lists newest first, ties by id). `flavor` is the flavor as it
-- was at boot (Nova embeds a copy; later flavor edits do not change a server). `boot` is the
-- monitor configuration the server runs with (kernel, initrd, arguments, root disk), so a
-- restart of outpostd or of the server needs nothing but this row.
CREATE TABLE servers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    flavor TEXT NOT NULL,
    image_ref TEXT NOT NULL,
    boot TEXT NOT NULL,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    power_state INTEGER NOT NULL,
    host TEXT,
    fault TEXT,
    metadata TEXT NOT NULL,
    user_data TEXT,
    key_name TEXT,
    config_drive TEXT NOT NULL DEFAULT '',
    disk_config TEXT NOT NULL DEFAULT 'MANUAL',
    networks TEXT NOT NULL,
    -- The running monitor: its supervising process (pid, /proc start time, host boot id).
    monitor_pid INTEGER,
    monitor_start_time INTEGER,
    monitor_boot_id TEXT,
    -- A resize waiting for confirmResize/revertResize (or in progress): JSON.
    resize TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    launched_at INTEGER
);

CREATE INDEX servers_project ON servers (project_id);

-- One row per server with a multi-step operation under way (create, delete, resize, ...):
-- the step reached, written before the step's effect starts, so a restart knows what to
-- finish or undo. Removed when the operation ends.
CREATE TABLE server_tasks (
    server_id TEXT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The scheduler's claims (outpost_resources::Claim as JSON), one per consumer: a server,
-- or a migration holding a resized server's old size.
CREATE TABLE claims (
    consumer_id TEXT PRIMARY KEY,
    claim TEXT NOT NULL
);
