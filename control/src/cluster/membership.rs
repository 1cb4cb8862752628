//! This box's membership (docs/cluster.md, "Forming a cluster" and "Leases"): it bootstraps
//! the cluster or joins it, holds one lease (TTL 10 s, renewed every second) that carries its
//! `/alive/<box>` key, publishes its inventory and usage, and reads every member for Nova's
//! os-services and os-hypervisors.
//!
//! The lease id is kept in the state directory: an outpostd that restarts within the TTL
//! reattaches to its lease, so a restart is not a box death (the box-failure work fences and
//! evacuates on the lease's expiry). Every contested write is one etcd transaction with
//! compare clauses; nothing is read-then-written blindly.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::etcd::Etcd;
use super::keys;
use super::records::{
    AliveRecord, Amounts, BoxRecord, ClusterRecord, ProviderRecord, TokenRecord, UsageRecord,
    ALIVE_SCHEMA, BOX_SCHEMA, CLUSTER_SCHEMA, PROVIDER_SCHEMA, TOKEN_SCHEMA,
};
use super::{ClusterError, ClusterSettings};
use crate::timestamp::Timestamp;

/// The box lease's time to live: the others see this box down this long after its last
/// renewal.
pub const LEASE_TTL_SECS: i64 = 10;
/// How often the lease is renewed.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// A keep-alive unanswered this long is given up and sent again on a new stream: the leader
/// answers one in milliseconds (renewals do not go through the raft log), so a longer wait
/// only delays the first renewal after an outage.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// How soon a failed keep-alive stream is opened again.
const RETRY_AFTER: Duration = Duration::from_millis(250);
const LEASE_FILE: &str = "cluster-lease";
/// Longest validity of a join token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a box offers, as it publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// vCPUs, MiB of RAM and GiB of disk (os-hypervisors).
    pub total: Amounts,
    pub inventories:
        std::collections::BTreeMap<outpost_resources::ResourceClass, outpost_resources::Inventory>,
    pub traits: std::collections::BTreeSet<String>,
}

/// A member as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStatus {
    pub record: BoxRecord,
    pub alive: Option<AliveRecord>,
    pub provider: Option<ProviderRecord>,
    /// What the claims on it add up to (none until its first claim).
    pub usage: Option<UsageRecord>,
}

impl BoxStatus {
    pub fn is_up(&self) -> bool {
        self.alive.is_some()
    }
}

/// This box's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    etcd: Etcd,
    name: String,
    /// The box lease's id: shared by every clone, since the renewing task replaces a lease
    /// found expired and the controller's key goes on the lease of the moment.
    lease: Arc<AtomicI64>,
    /// When the last acknowledged keep-alive was sent: the lease is known to live until at
    /// least this plus its TTL (the fence counts from it, see [`super::fence`]).
    last_ack: Arc<Mutex<Instant>>,
}

impl Membership {
    /// Connects, bootstraps or joins, takes (or reattaches to) the box lease, puts the alive
    /// key on it and starts renewing it on the current tokio runtime.
    pub async fn join(
        settings: &ClusterSettings,
        state_dir: &Path,
        inventory: &Inventory,
        api: Option<std::net::SocketAddr>,
        api_pin: Option<crate::tls::CertPin>,
    ) -> Result<Membership, ClusterError> {
        let etcd = connect(settings).await?;
        enter(&etcd, settings, api, api_pin).await?;
        let (lease, renewed) = lease(&etcd, &state_dir.join(LEASE_FILE)).await?;
        let alive = alive_record()?;
        let (key, value) = (keys::alive(&settings.name), to_json(&alive));
        etcd.run(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        let membership = Membership {
            etcd,
            name: settings.name.clone(),
            lease: Arc::new(AtomicI64::new(lease)),
            last_ack: Arc::new(Mutex::new(renewed)),
        };
        membership.publish(inventory).await?;
        tokio::spawn(membership.clone().renew());
        Ok(membership)
    }

    /// A handle for an operator's one-off command on this box (`outpostd cluster ...`): it
    /// reads and writes the cluster's records but holds no lease and is not "alive".
    pub async fn operator(settings: &ClusterSettings) -> Result<Membership, ClusterError> {
        let etcd = connect(settings).await?;
        Ok(Membership {
            etcd,
            name: settings.name.clone(),
            lease: Arc::new(AtomicI64::new(0)),
            last_ack: Arc::new(Mutex::new(Instant::now())),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this box reaches etcd with (for watches).
    pub fn etcd(&self) -> Etcd {
        self.etcd.clone()
    }

    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// When the last acknowledged keep-alive was sent.
    pub fn last_ack(&self) -> Instant {
        *self.last_ack.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Renews the lease every second for as long as the runtime runs. A lease found expired
    /// (etcd unreachable for longer than its TTL) is replaced and the alive key put again.
    /// A failed stream is retried after [`RETRY_AFTER`], never slower: the fence resumes
    /// this box's guests on the first renewal after an outage, so a back-off would turn a
    /// network blip into a kill (a retry costs one request to this box's own member).
    async fn renew(mut self) {
        loop {
            if let Err(e) = self.keep_alive_stream().await {
                tracing::warn!("cluster: renewing box {}'s lease: {e}", self.name);
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }

    /// One keep-alive stream, until it fails or reports the lease gone.
    async fn keep_alive_stream(&mut self) -> Result<(), ClusterError> {
        let (i, mut client) = self.etcd.client().await?;
        let result = self.keep_alive_on(&mut client).await;
        if let Err(ClusterError::Etcd(e)) = &result {
            if super::etcd::unavailable(e) {
                self.etcd.failed(i).await;
            }
        }
        result
    }

    async fn keep_alive_on(
        &mut self,
        client: &mut etcd_client::Client,
    ) -> Result<(), ClusterError> {
        let (mut keeper, mut stream) = client.lease_keep_alive(self.lease_id()).await?;
        loop {
            let sent = Instant::now();
            keeper.keep_alive().await?;
            let answer = tokio::time::timeout(ANSWER_WITHIN, stream.message())
                .await
                .map_err(|_| {
                    ClusterError::Etcd(etcd_client::Error::LeaseKeepAliveError(format!(
                        "no answer to a keep-alive within {ANSWER_WITHIN:?}"
                    )))
                })??;
            match answer {
                Some(resp) if resp.ttl() > 0 => {
                    *self.last_ack.lock().unwrap_or_else(PoisonError::into_inner) = sent;
                }
                _ => {
                    tracing::warn!(
                        "cluster: box {}'s lease {} expired; taking a new one",
                        self.name,
                        self.lease_id()
                    );
                    return self.replace_lease(client).await;
                }
            }
            tokio::time::sleep(KEEPALIVE_EVERY).await;
        }
    }

    async fn replace_lease(
        &mut self,
        client: &mut etcd_client::Client,
    ) -> Result<(), ClusterError> {
        let granted = client.lease_grant(LEASE_TTL_SECS, None).await?;
        self.lease.store(granted.id(), Ordering::Relaxed);
        let alive = client.get(keys::alive(&self.name), None).await?;
        let record = match alive.kvs().first() {
            Some(kv) => kv.value().to_vec(),
            None => to_json(&alive_record()?),
        };
        client
            .put(
                keys::alive(&self.name),
                record,
                Some(PutOptions::new().with_lease(self.lease_id())),
            )
            .await?;
        Ok(())
    }

    /// Writes this box's inventory for the scheduler on every box and for os-hypervisors.
    /// Usage is not the box's to write: the claim transactions keep it.
    pub async fn publish(&self, inventory: &Inventory) -> Result<(), ClusterError> {
        let record = ProviderRecord {
            schema: PROVIDER_SCHEMA,
            total: inventory.total,
            inventories: inventory.inventories.clone(),
            traits: inventory.traits.clone(),
            updated_at: Timestamp::now().to_rfc3339(),
        };
        let (key, value) = (keys::provider(&self.name), to_json(&record));
        self.etcd
            .run(|mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move { c.put(key, value, None).await }
            })
            .await?;
        Ok(())
    }

    /// Every member, alive or not, sorted by name.
    pub async fn boxes(&self) -> Result<Vec<BoxStatus>, ClusterError> {
        // One read revision for the three prefixes: a consistent picture.
        let resp = self
            .etcd
            .run(|mut c| async move {
                let prefixed = Some(GetOptions::new().with_prefix());
                let txn = Txn::new().and_then([
                    TxnOp::get(keys::boxes(), prefixed.clone()),
                    TxnOp::get(keys::alive_prefix(), prefixed.clone()),
                    TxnOp::get(keys::providers(), prefixed.clone()),
                    TxnOp::get(keys::usages(), prefixed),
                ]);
                c.txn(txn).await
            })
            .await?;
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (Some(boxes), Some(alive), Some(providers), Some(usages)) =
            (gets.next(), gets.next(), gets.next(), gets.next())
        else {
            return Err(corrupt("txn", "a read returned no ranges".into()));
        };
        let by_name = |resp: &etcd_client::GetResponse, prefix: &str| {
            keys::children(resp.kvs(), prefix)
                .into_iter()
                .map(|(name, kv)| (name, kv.value().to_vec()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let alive = by_name(&alive, &keys::alive_prefix());
        let providers = by_name(&providers, &keys::providers());
        let usages = by_name(&usages, &keys::usages());
        let mut out = Vec::new();
        for (name, value) in by_name(&boxes, &keys::boxes()) {
            let record: BoxRecord = from_json(&keys::box_record(&name), &value)?;
            let alive = alive
                .get(&name)
                .map(|v| from_json(&keys::alive(&name), v))
                .transpose()?;
            let provider = providers
                .get(&name)
                .map(|v| from_json(&keys::provider(&name), v))
                .transpose()?;
            let usage = usages
                .get(&name)
                .map(|v| from_json(&keys::usage(&name), v))
                .transpose()?;
            out.push(BoxStatus {
                record,
                alive,
                provider,
                usage,
            });
        }
        Ok(out)
    }

    /// Enables or disables new placements on `name` (`openstack compute service set`).
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<BoxRecord, ClusterError> {
        let key = keys::box_record(name);
        let got = self
            .etcd
            .run(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let kv = got
            .kvs()
            .first()
            .ok_or_else(|| ClusterError::NoSuchBox(name.to_owned()))?;
        let mut record: BoxRecord = from_json(&key, kv.value())?;
        record.enabled = enabled;
        record.disabled_reason = if enabled { None } else { reason };
        let (rev, value) = (kv.mod_revision(), to_json(&record));
        let resp = self
            .etcd
            .run(|mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                        .and_then([TxnOp::put(key, value, None)]);
                    c.txn(txn).await
                }
            })
            .await?;
        if !resp.succeeded() {
            return Err(ClusterError::Conflict(name.to_owned()));
        }
        Ok(record)
    }

    /// A join token valid for `ttl` (at most a day), optionally for one box name only. The
    /// secret is returned once; etcd keeps only its hash, on a lease that ends with it.
    pub async fn create_join_token(
        &self,
        ttl: Duration,
        for_box: Option<&str>,
    ) -> Result<String, ClusterError> {
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_TOKEN_TTL);
        let secret = crate::random::token().map_err(|e| corrupt("token", e.to_string()))?;
        let (_, mut client) = self.etcd.client().await?;
        let lease = client.lease_grant(ttl.as_secs() as i64, None).await?.id();
        let record = TokenRecord {
            schema: TOKEN_SCHEMA,
            for_box: for_box.map(str::to_owned),
            created_by: self.name.clone(),
            expires_at: Timestamp::now().saturating_add(ttl).to_rfc3339(),
        };
        client
            .put(
                keys::join_token(&sha256_hex(&secret)),
                to_json(&record),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(secret)
    }

    /// Removes a member that is down (`outpost cluster remove`): its record and inventory.
    pub async fn remove(&self, name: &str) -> Result<(), ClusterError> {
        if name == self.name {
            return Err(ClusterError::RemoveSelf(name.to_owned()));
        }
        let key = keys::box_record(name);
        let txn = Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Greater, 0),
                Compare::version(keys::alive(name), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::delete(key.clone(), None),
                TxnOp::delete(keys::provider(name), None),
                TxnOp::delete(keys::usage(name), None),
            ])
            .or_else([TxnOp::get(key, None)]);
        let (_, mut client) = self.etcd.client().await?;
        let resp = client.txn(txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        let exists = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => !g.kvs().is_empty(),
            _ => false,
        });
        Err(if exists {
            ClusterError::StillAlive(name.to_owned())
        } else {
            ClusterError::NoSuchBox(name.to_owned())
        })
    }

    /// Leaves the lease to expire on its own: used when outpostd stops for good (a restart
    /// within the TTL reattaches instead).
    pub async fn resign(&self) -> Result<(), ClusterError> {
        let (_, mut client) = self.etcd.client().await?;
        client.lease_revoke(self.lease_id()).await?;
        Ok(())
    }
}

/// Connects to this box's own member first (the endpoint on its underlay address), then the
/// others in the configured order.
async fn connect(settings: &ClusterSettings) -> Result<Etcd, ClusterError> {
    Etcd::connect(settings.endpoints_own_first()).await
}

/// Bootstraps the cluster (no `/cluster` key yet: this box is the first), rejoins as a known
/// member, or joins with a token, each as one transaction.
async fn enter(
    etcd: &Etcd,
    s: &ClusterSettings,
    api: Option<std::net::SocketAddr>,
    api_pin: Option<crate::tls::CertPin>,
) -> Result<(), ClusterError> {
    let (_, mut client) = etcd.client().await?;
    let now = Timestamp::now().to_rfc3339();
    let id = || crate::random::uuid().map_err(|e| corrupt("id", e.to_string()));
    let record = BoxRecord {
        schema: BOX_SCHEMA,
        name: s.name.clone(),
        service_id: id()?,
        hypervisor_id: id()?,
        underlay: s.underlay.to_string(),
        availability_zone: s.availability_zone.clone(),
        enabled: true,
        disabled_reason: None,
        joined_at: now.clone(),
        api: api.map(|a| a.to_string()),
        api_cert_sha256: api_pin.map(|p| p.to_hex()),
    };
    let cluster = ClusterRecord {
        schema: CLUSTER_SCHEMA,
        id: id()?,
        created_by: s.name.clone(),
        created_at: now,
    };
    let me = keys::box_record(&s.name);
    // The first box: create the cluster and itself at once.
    let bootstrap = Txn::new()
        .when([Compare::version(keys::cluster(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(keys::cluster(), to_json(&cluster), None),
            TxnOp::put(me.clone(), to_json(&record), None),
        ])
        .or_else([TxnOp::get(me.clone(), None)]);
    let resp = client.txn(bootstrap).await?;
    if resp.succeeded() {
        tracing::info!("cluster: box {} bootstrapped a new cluster", s.name);
        return Ok(());
    }
    let known = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    });
    if let Some((value, rev)) = known {
        // A member again: keep its ids and enabled state, refresh what the config says.
        let mut old: BoxRecord = from_json(&me, &value)?;
        old.underlay = record.underlay;
        old.availability_zone = record.availability_zone;
        old.api = record.api;
        old.api_cert_sha256 = record.api_cert_sha256;
        let txn = Txn::new()
            .when([Compare::mod_revision(me.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(me, to_json(&old), None)]);
        if !client.txn(txn).await?.succeeded() {
            return Err(ClusterError::Conflict(s.name.clone()));
        }
        return Ok(());
    }
    let not_invited = || ClusterError::NotInvited {
        name: s.name.clone(),
    };
    let secret = s.join_token.as_deref().ok_or_else(not_invited)?;
    let token_key = keys::join_token(&sha256_hex(secret));
    let got = client.get(token_key.clone(), None).await?;
    let kv = got.kvs().first().ok_or_else(not_invited)?;
    let token: TokenRecord = from_json(&token_key, kv.value())?;
    if token.for_box.as_deref().is_some_and(|b| b != s.name) {
        return Err(not_invited());
    }
    // Spend the token and become a member in one step: a token admits one box.
    let txn = Txn::new()
        .when([
            Compare::mod_revision(token_key.clone(), CompareOp::Equal, kv.mod_revision()),
            Compare::version(me.clone(), CompareOp::Equal, 0),
        ])
        .and_then([
            TxnOp::delete(token_key, None),
            TxnOp::put(me, to_json(&record), None),
        ]);
    if !client.txn(txn).await?.succeeded() {
        return Err(not_invited());
    }
    tracing::info!("cluster: box {} joined", s.name);
    Ok(())
}

/// The box lease: the one recorded in `file` while etcd still has it, else a new one; with
/// the instant it was last renewed, as far as this process can tell (a reattached lease
/// with `t` seconds left was renewed `TTL - t` seconds ago, by the outpostd before this one).
async fn lease(etcd: &Etcd, file: &PathBuf) -> Result<(i64, Instant), ClusterError> {
    let (_, mut client) = etcd.client().await?;
    if let Some(id) = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
    {
        let asked = Instant::now();
        let ttl = client.lease_time_to_live(id, None).await?;
        if ttl.ttl() > 0 {
            tracing::info!("cluster: reattached to lease {id} ({} s left)", ttl.ttl());
            let spent = (LEASE_TTL_SECS - ttl.ttl()).max(0).unsigned_abs();
            let renewed = asked
                .checked_sub(Duration::from_secs(spent))
                .unwrap_or(asked);
            return Ok((id, renewed));
        }
    }
    let asked = Instant::now();
    let id = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|source| ClusterError::LeaseFile {
            path: file.clone(),
            source,
        })?;
    Ok((id, asked))
}

/// This outpostd's presence: a fresh boot id at every start.
fn alive_record() -> Result<AliveRecord, ClusterError> {
    Ok(AliveRecord {
        schema: ALIVE_SCHEMA,
        boot_id: crate::random::uuid().map_err(|e| corrupt("boot id", e.to_string()))?,
        started_at: Timestamp::now().to_rfc3339(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

fn sha256_hex(secret: &str) -> String {
    crate::random::hex(&Sha256::digest(secret.as_bytes()))
}

fn to_json<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialize: plain structs of strings and numbers")
}

fn from_json<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e.to_string()))
}

fn corrupt(key: &str, reason: String) -> ClusterError {
    ClusterError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}
