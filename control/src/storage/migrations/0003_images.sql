-- Glance images. `status` is queued, saving, active or killed; the data itself lives in the
-- image store under the image's id. `size`, `virtual_size` and the hashes describe the stored
-- file (what GET /file returns); the `uploaded_*` columns are set only when the upload was
-- converted (qcow2 stored as raw) and describe the bytes as they were received.
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    owner TEXT,
    disk_format TEXT,
    container_format TEXT,
    min_disk INTEGER NOT NULL DEFAULT 0,
    min_ram INTEGER NOT NULL DEFAULT 0,
    protected INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    virtual_size INTEGER,
    checksum TEXT,
    os_hash_algo TEXT,
    os_hash_value TEXT,
    uploaded_disk_format TEXT,
    uploaded_checksum TEXT,
    uploaded_os_hash_value TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Additional properties (`kernel_id`, `ramdisk_id`, `os_command_line`, anything else).
CREATE TABLE image_properties (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, key)
);

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);

-- Who uses an image's data: `volume` rows are written by volume creation (for the volume's
-- life), `server` rows by server creation. An image with rows here cannot be deleted; the
-- foreign key (no cascade) makes the database refuse it too.
CREATE TABLE image_usage (
    image_id TEXT NOT NULL REFERENCES images (id),
    consumer_kind TEXT NOT NULL,
    consumer_id TEXT NOT NULL,
    PRIMARY KEY (image_id, consumer_kind, consumer_id)
);
CREATE INDEX image_usage_by_consumer ON image_usage (consumer_kind, consumer_id);
