-- Where a create request asked its server to go (availability zone, hints, host): the
-- scheduler reads it when it places the server, which may happen after a restart.
ALTER TABLE servers ADD COLUMN placement TEXT NOT NULL DEFAULT '{}';
