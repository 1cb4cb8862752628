-- Cinder volumes and snapshots. Sizes are GiB, as the API gives them. The files live in the
-- volume store under the same ids. `volume_type` is `thin` or `thick`.
CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    volume_type TEXT NOT NULL,
    image_id TEXT,
    -- The image's attributes and properties when the volume was copied from it (JSON object
    -- of strings): Cinder's `volume_image_metadata`, which carries kernel_id, ramdisk_id and
    -- os_command_line for booting from the volume.
    image_metadata TEXT,
    snapshot_id TEXT,
    -- Why the volume is in `error`, for the log and `outpost volume show`.
    fault TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE volume_metadata (
    volume_id TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);

-- One attachment per volume (no multiattach). Nova's volume attachments write here.
CREATE TABLE volume_attachments (
    id TEXT PRIMARY KEY,
    volume_id TEXT NOT NULL UNIQUE REFERENCES volumes (id),
    server_id TEXT NOT NULL,
    device TEXT,
    attached_at INTEGER NOT NULL
);
CREATE INDEX volume_attachments_by_server ON volume_attachments (server_id);

-- A snapshot keeps its volume from being deleted (no cascade).
CREATE TABLE volume_snapshots (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    volume_id TEXT NOT NULL REFERENCES volumes (id),
    name TEXT,
    description TEXT,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    fault TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX volume_snapshots_by_volume ON volume_snapshots (volume_id);
