//! Per-project quota limits in SQLite, behind [`QuotaStore`].

use super::StorageError;
use crate::quota::{Limit, QuotaStore};
use std::collections::BTreeMap;

impl QuotaStore for super::Db {
    fn quota_overrides(&self, project_id: &str) -> Result<BTreeMap<String, Limit>, StorageError> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT resource, hard_limit FROM quota_limits WHERE project_id = ?1")?;
            let rows = st
                .query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn set_quota_overrides(
        &self,
        project_id: &str,
        limits: &BTreeMap<String, Limit>,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            for (resource, limit) in limits {
                tx.execute(
                    "INSERT INTO quota_limits (project_id, resource, hard_limit)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = ?3",
                    (project_id, resource, limit),
                )?;
            }
            Ok(())
        })
    }

    fn clear_quota_overrides(
        &self,
        project_id: &str,
        resources: &[&str],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            for resource in resources {
                tx.execute(
                    "DELETE FROM quota_limits WHERE project_id = ?1 AND resource = ?2",
                    (project_id, resource),
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_quota_store_contract() {
        crate::quota::store::conformance::run(|| Db::open_in_memory().unwrap());
    }
}
