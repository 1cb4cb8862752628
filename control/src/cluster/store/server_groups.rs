//! Server groups' door in etcd: `/server-groups/<id>` holds a group with its members inline
//! (docs/cluster.md, "The keyspace"). A group's `seq` is its key's `create_revision`.
//! Members join and leave by read, change and write back under a `mod_revision` compare,
//! retried (bounded) when another box wrote the group in between, so two creates joining
//! one group at once both stay members.

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{
    committed_at, contended, existing, from_json, jitter, ranges, to_json, EtcdDoors, Kv, MAX_TRIES,
};
use crate::compute::server_groups::store::{ServerGroup, ServerGroupStore};
use crate::quota::{Limit, QuotaError, UNLIMITED};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_resources::GroupPolicy;

const SERVER_GROUP_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct ServerGroupRecord {
    schema: u32,
    id: String,
    name: String,
    project_id: String,
    user_id: String,
    policy: GroupPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_server_per_host: Option<u32>,
    #[serde(default)]
    members: Vec<String>,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
}

impl ServerGroupRecord {
    fn new(g: &ServerGroup) -> ServerGroupRecord {
        ServerGroupRecord {
            schema: SERVER_GROUP_SCHEMA,
            id: g.id.clone(),
            name: g.name.clone(),
            project_id: g.project_id.clone(),
            user_id: g.user_id.clone(),
            policy: g.policy,
            max_server_per_host: g.max_server_per_host,
            members: g.members.clone(),
            created_at: g.created_at.micros(),
        }
    }

    fn into_group(self, seq: i64) -> ServerGroup {
        ServerGroup {
            seq,
            id: self.id,
            name: self.name,
            project_id: self.project_id,
            user_id: self.user_id,
            policy: self.policy,
            max_server_per_host: self.max_server_per_host,
            members: self.members,
            created_at: Timestamp(self.created_at),
        }
    }
}

fn decode(kv: &KeyValue) -> Result<ServerGroup, StorageError> {
    Ok(from_json::<ServerGroupRecord>(kv)?.into_group(kv.create_revision()))
}

/// [`ServerGroupStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdServerGroups {
    doors: EtcdDoors,
}

impl EtcdServerGroups {
    pub(super) fn new(doors: EtcdDoors) -> EtcdServerGroups {
        EtcdServerGroups { doors }
    }
}

impl Kv {
    async fn create_group(self, g: ServerGroup, limit: Limit) -> Result<ServerGroup, QuotaError> {
        let key = self.keys.server_group(&g.id);
        let prefix = self.keys.server_groups();
        let fresh = ServerGroup {
            members: Vec::new(),
            ..g
        };
        for _ in 0..MAX_TRIES {
            let mut when = vec![Compare::version(key.clone(), CompareOp::Equal, 0)];
            if limit != UNLIMITED {
                // The project's groups as of one revision; the put commits only if no group
                // was made or changed since, so the count still holds.
                let read = self
                    .txn(Txn::new().and_then([TxnOp::get(
                        prefix.as_str(),
                        Some(GetOptions::new().with_prefix()),
                    )]))
                    .await?;
                let mut held = 0;
                for kv in ranges(&read).into_iter().flatten() {
                    if decode(&kv)?.project_id == fresh.project_id {
                        held += 1;
                    }
                }
                crate::quota::check("server_groups", limit, held, 1)?;
                when.push(
                    Compare::mod_revision(
                        prefix.as_str(),
                        CompareOp::Less,
                        committed_at(&read) + 1,
                    )
                    .with_prefix(),
                );
            }
            let txn = Txn::new()
                .when(when)
                .and_then([TxnOp::put(
                    key.clone(),
                    to_json(&ServerGroupRecord::new(&fresh)),
                    None,
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                return Ok(ServerGroup {
                    seq: committed_at(&resp),
                    ..fresh
                });
            }
            if existing(&resp).first() == Some(&true) {
                return Err(StorageError::Backend(
                    format!("server group {} exists already", fresh.id).into(),
                )
                .into());
            }
            jitter().await;
        }
        Err(contended(&key).into())
    }

    /// Makes `server` a member of group `id` unless the group has `limit` members: Some(true)
    /// when it is (or already was) one, Some(false) when the group is full, None when there is
    /// no such group. The members are inside the group's record, so the count and the add are
    /// one compare-and-swap.
    async fn join(
        self,
        id: String,
        server: String,
        limit: Limit,
    ) -> Result<Option<bool>, StorageError> {
        let key = self.keys.server_group(&id);
        let done = self
            .modify_record(key, |record: &mut ServerGroupRecord| {
                if record.members.contains(&server) {
                    return (true, false);
                }
                let held = i64::try_from(record.members.len()).unwrap_or(i64::MAX);
                if crate::quota::check("server_group_members", limit, held, 1).is_err() {
                    return (false, false);
                }
                record.members.push(server.clone());
                (true, true)
            })
            .await?;
        Ok(done.map(|m| m.said))
    }

    async fn groups(self, project: Option<String>) -> Result<Vec<ServerGroup>, StorageError> {
        let mut out = Vec::new();
        for kv in self.range(self.keys.server_groups(), false).await? {
            let g = decode(&kv)?;
            if project.as_ref().is_none_or(|p| *p == g.project_id) {
                out.push(g);
            }
        }
        out.sort_by_key(|g| g.seq);
        Ok(out)
    }

    async fn delete_group(self, id: String) -> Result<bool, StorageError> {
        let key = self.keys.server_group(&id);
        // Placement's key for the group (rewritten by its members' claims) goes with it.
        let placed = crate::cluster::keys::group_placement(&id);
        let resp = self
            .txn(Txn::new().and_then([TxnOp::delete(key, None), TxnOp::delete(placed, None)]))
            .await?;
        // Whether the group itself was there (the first delete).
        Ok(resp
            .op_responses()
            .into_iter()
            .next()
            .is_some_and(|r| matches!(r, etcd_client::TxnOpResponse::Delete(d) if d.deleted() > 0)))
    }

    /// Applies `change` to the members of group `id` and writes the group back unless
    /// someone wrote it in between (then reads again). False if there is no such group.
    async fn change_members(
        self,
        id: String,
        change: impl Fn(&mut Vec<String>) + Send + 'static,
    ) -> Result<bool, StorageError> {
        let key = self.keys.server_group(&id);
        let done = self
            .modify_record(key, |record: &mut ServerGroupRecord| {
                let before = record.members.clone();
                change(&mut record.members);
                ((), record.members != before)
            })
            .await?;
        Ok(done.is_some())
    }
}

impl ServerGroupStore for EtcdServerGroups {
    fn create_group(&self, g: &ServerGroup, limit: Limit) -> Result<ServerGroup, QuotaError> {
        let g = g.clone();
        self.doors.call(|kv| kv.create_group(g, limit))
    }

    fn group(&self, id: &str) -> Result<Option<ServerGroup>, StorageError> {
        let key = self.doors.kv.keys.server_group(id);
        self.doors
            .call(|kv| async move { kv.get(key).await?.map(|kv| decode(&kv)).transpose() })
    }

    fn groups(&self, project: Option<&str>) -> Result<Vec<ServerGroup>, StorageError> {
        let project = project.map(str::to_owned);
        self.doors.call(|kv| kv.groups(project))
    }

    fn delete_group(&self, id: &str) -> Result<bool, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| kv.delete_group(id))
    }

    fn add_member(&self, group: &str, server: &str, limit: Limit) -> Result<bool, QuotaError> {
        let (id, server) = (group.to_owned(), server.to_owned());
        match self.doors.call(|kv| kv.join(id, server, limit))? {
            None => Ok(false),
            Some(true) => Ok(true),
            Some(false) => {
                let held = self.group(group)?.map_or(0, |g| g.members.len());
                Err(QuotaError::Exceeded {
                    resource: "server_group_members",
                    requested: 1,
                    used: i64::try_from(held).unwrap_or(i64::MAX),
                    limit,
                })
            }
        }
    }

    fn remove_member(&self, group: &str, server: &str) -> Result<(), StorageError> {
        let server = server.to_owned();
        self.doors
            .call(|kv| {
                kv.change_members(group.to_owned(), move |members| {
                    members.retain(|m| *m != server)
                })
            })
            .map(|_| ())
    }
}
