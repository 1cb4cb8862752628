-- The admin password the create answered with (Nova's adminPass): the metadata service and
-- the config drive give it to the guest as admin_pass. No API view reads it.
ALTER TABLE servers ADD COLUMN admin_pass TEXT;
