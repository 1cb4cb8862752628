//! Per-project quota limits in etcd: `/quotas/<project id>/<resource>` holds one limit, so a
//! project's limits are one range read and a set or clear is one transaction.

use etcd_client::{Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{from_json, to_json, EtcdDoors, MAX_TXN_OPS};
use crate::quota::{Limit, QuotaStore};
use crate::store::StorageError;

const QUOTA_LIMIT_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct QuotaLimitRecord {
    schema: u32,
    limit: Limit,
}

/// [`QuotaStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdQuotas {
    doors: EtcdDoors,
}

impl EtcdQuotas {
    pub(super) fn new(doors: EtcdDoors) -> EtcdQuotas {
        EtcdQuotas { doors }
    }
}

/// A whole change in one transaction: a quota set names at most the ~20 resources there are.
fn one_txn(ops: Vec<TxnOp>) -> Result<Txn, StorageError> {
    if ops.len() > MAX_TXN_OPS {
        return Err(StorageError::Backend(
            format!(
                "a quota change of {} limits is more than one etcd transaction holds",
                ops.len()
            )
            .into(),
        ));
    }
    Ok(Txn::new().and_then(ops))
}

impl QuotaStore for EtcdQuotas {
    fn quota_overrides(&self, project_id: &str) -> Result<BTreeMap<String, Limit>, StorageError> {
        let project_id = project_id.to_owned();
        self.doors.call(|kv| async move {
            let prefix = kv.keys.quota_limits_of(&project_id);
            kv.range(prefix.clone(), false)
                .await?
                .iter()
                .map(|entry| {
                    let key = String::from_utf8_lossy(entry.key());
                    let resource = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
                    let record: QuotaLimitRecord = from_json(entry)?;
                    Ok((resource, record.limit))
                })
                .collect()
        })
    }

    fn set_quota_overrides(
        &self,
        project_id: &str,
        limits: &BTreeMap<String, Limit>,
    ) -> Result<(), StorageError> {
        let (project_id, limits) = (project_id.to_owned(), limits.clone());
        self.doors.call(|kv| async move {
            let puts = limits
                .iter()
                .map(|(resource, &limit)| {
                    let record = QuotaLimitRecord {
                        schema: QUOTA_LIMIT_SCHEMA,
                        limit,
                    };
                    TxnOp::put(
                        kv.keys.quota_limit(&project_id, resource),
                        to_json(&record),
                        None,
                    )
                })
                .collect();
            kv.txn(one_txn(puts)?).await?;
            Ok(())
        })
    }

    fn clear_quota_overrides(
        &self,
        project_id: &str,
        resources: &[&str],
    ) -> Result<(), StorageError> {
        let project_id = project_id.to_owned();
        let keys: Vec<String> = resources
            .iter()
            .map(|r| self.doors.kv.keys.quota_limit(&project_id, r))
            .collect();
        self.doors.call(|kv| async move {
            let deletes = keys.into_iter().map(|k| TxnOp::delete(k, None)).collect();
            kv.txn(one_txn(deletes)?).await?;
            Ok(())
        })
    }
}
