-- The limits an admin set for a project (Nova's, Cinder's and Neutron's quota sets), one row
-- per resource; a resource without a row has the deployment's default. No foreign key to
-- projects: identity may live in another store (etcd).
CREATE TABLE quota_limits (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit INTEGER NOT NULL CHECK (hard_limit >= -1),
    PRIMARY KEY (project_id, resource)
);
