-- Verified copies of an image's data, one per box that holds one (docs/cluster.md, "Images
-- across boxes"). A box alone records its own copy when an upload completes.
CREATE TABLE image_copies (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    size INTEGER NOT NULL,
    os_hash_value TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (image_id, holder)
);
