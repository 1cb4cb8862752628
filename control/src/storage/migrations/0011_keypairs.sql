-- Nova key pairs, named per user. `seq` is Nova's integer `id` (creation order);
-- AUTOINCREMENT keeps it from being reused after a delete. No foreign key to users: Nova
-- keeps a deleted user's pairs too, and identity may live in another store (etcd).
CREATE TABLE key_pairs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_type TEXT NOT NULL CHECK (key_type IN ('ssh', 'x509')),
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

-- The public key a server was made with (Nova's instances.key_data): the guest is given this
-- one even if the pair is deleted or replaced later.
ALTER TABLE servers ADD COLUMN key_data TEXT;
