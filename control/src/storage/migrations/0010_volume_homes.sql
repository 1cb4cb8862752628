-- The box whose disk holds each volume's and snapshot's file (docs/cluster.md). A box alone
-- homes all of its own; rows from before read as '' and mean just that.
ALTER TABLE volumes ADD COLUMN home TEXT NOT NULL DEFAULT '';
ALTER TABLE volume_snapshots ADD COLUMN home TEXT NOT NULL DEFAULT '';
