//! A unit of work over etcd keys, for the doors whose changes span several records (Neutron's
//! [`crate::network::NetworkTx`]): a consistent view that remembers what it read, and writes
//! that land together only if nothing read changed meanwhile.
//!
//! Every read is served at one revision, fixed by the first, so the view is consistent
//! without locks. Each key read by name is remembered with its `mod_revision` (0 when
//! absent), each prefix read whole as a range. Writes are buffered, and reads see them. The
//! commit is one etcd transaction whose compares are
//!
//! - per key read by name: `mod_revision == seen` (`version == 0` when it was absent), so a
//!   record changed, deleted or created since is noticed;
//! - per prefix read whole: `mod_revision < snapshot + 1` over the range, so a key created
//!   or changed under it is noticed;
//! - per key written that was only seen in a range: as for a key read by name, so a put
//!   never brings back a record deleted meanwhile.
//!
//! A range compare cannot see a key deleted from the range (etcd compares the keys that
//! exist). A unit of work that lists records and then writes one reads it by name first, so
//! the gap is only "something listed is gone", which can only make a decision more cautious
//! (an address counted as taken, a group counted as in use). A delete of a key seen in a
//! range needs no compare of its own: if another writer deleted it first, deleting it again
//! changes nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};

use super::{backend, EtcdDoors, Kv, MAX_TXN_OPS};
use crate::cluster::ClusterError;
use crate::store::StorageError;

/// What a unit of work read and wrote so far.
#[derive(Default)]
struct State {
    /// The revision every read is served at; 0 until the first read.
    revision: i64,
    /// Keys read by name: their value and `mod_revision` at [`State::revision`] (None, 0 when
    /// absent).
    keys: BTreeMap<String, (Option<Vec<u8>>, i64)>,
    /// Prefixes read whole.
    ranges: BTreeMap<String, Range>,
    /// Buffered writes in key order: a value to put, or None to delete.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// A read found the snapshot's revision compacted away: the work must start again.
    compacted: bool,
}

impl State {
    /// `key` as the snapshot holds it, when a range already read covers it.
    fn in_ranges(&self, key: &str) -> Option<(Option<Vec<u8>>, i64)> {
        self.ranges
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, range)| match range.kvs.get(key) {
                Some((v, rev)) => (Some(v.clone()), *rev),
                None => (None, 0),
            })
    }

    /// Whether the commit compares `key`: read by name, or under a guarded range.
    fn guards(&self, key: &str) -> bool {
        self.keys.contains_key(key)
            || self
                .ranges
                .iter()
                .any(|(prefix, range)| range.guarded && key.starts_with(prefix.as_str()))
    }
}

/// A prefix read whole: each key under it with its value and `mod_revision`.
struct Range {
    kvs: BTreeMap<String, (Vec<u8>, i64)>,
    /// Whether the commit compares the range (see [`UnitOfWork::peek`]).
    guarded: bool,
}

/// One attempt at a unit of work (the store runs the closure again on a fresh one when the
/// commit loses a race). Single-threaded: the closure that uses it runs on one thread.
pub(super) struct UnitOfWork<'a> {
    doors: &'a EtcdDoors,
    state: RefCell<State>,
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Committed,
    /// Something read changed since: run the work again on fresh reads.
    Lost,
}

impl<'a> UnitOfWork<'a> {
    pub(super) fn new(doors: &'a EtcdDoors) -> UnitOfWork<'a> {
        UnitOfWork {
            doors,
            state: RefCell::new(State::default()),
        }
    }

    /// Whether a read failed because etcd had compacted the snapshot's revision (the work's
    /// error is then not its own: run it again).
    pub(super) fn compacted(&self) -> bool {
        self.state.borrow().compacted
    }

    /// The value of `key`: this work's own write if it made one, else the snapshot's.
    pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        {
            let mut s = self.state.borrow_mut();
            if let Some(w) = s.writes.get(key) {
                return Ok(w.clone());
            }
            if let Some((v, _)) = s.keys.get(key) {
                return Ok(v.clone());
            }
            if let Some(seen) = s.in_ranges(key) {
                let value = seen.0.clone();
                s.keys.insert(key.to_owned(), seen);
                return Ok(value);
            }
        }
        let kv = self.read(key, false)?.into_iter().next();
        let seen = kv.map_or((None, 0), |kv| {
            (Some(kv.value().to_vec()), kv.mod_revision())
        });
        let value = seen.0.clone();
        self.state.borrow_mut().keys.insert(key.to_owned(), seen);
        Ok(value)
    }

    /// Every key under `prefix` with its value, in key order, this work's writes included.
    /// The commit fails if a key was created or changed under `prefix` meanwhile.
    pub(super) fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.range(prefix, true)
    }

    /// As [`Self::list`], but the commit does not compare the range: for a listing that only
    /// suggests candidates (the free addresses of a subnet), each of which the work then
    /// reads by name before it takes it, so that key's own compare decides. Two boxes taking
    /// different addresses of one subnet then both commit.
    pub(super) fn peek(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.range(prefix, false)
    }

    fn range(&self, prefix: &str, guarded: bool) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let known = self.state.borrow().ranges.contains_key(prefix);
        let fetched = if known {
            BTreeMap::new()
        } else {
            self.read(prefix, true)?
                .into_iter()
                .map(|kv| {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    (key, (kv.value().to_vec(), kv.mod_revision()))
                })
                .collect()
        };
        let mut s = self.state.borrow_mut();
        let range = s.ranges.entry(prefix.to_owned()).or_insert(Range {
            kvs: fetched,
            guarded,
        });
        range.guarded |= guarded;
        let mut view: BTreeMap<String, Vec<u8>> = range
            .kvs
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        for (k, w) in s.writes.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match w {
                Some(v) => view.insert(k.clone(), v.clone()),
                None => view.remove(k),
            };
        }
        Ok(view.into_iter().collect())
    }

    pub(super) fn put(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        self.write(key, Some(value))
    }

    pub(super) fn delete(&self, key: String) -> Result<(), StorageError> {
        self.write(key, None)
    }

    /// Buffers a write. A key the commit would not compare yet is read by name first.
    fn write(&self, key: String, value: Option<Vec<u8>>) -> Result<(), StorageError> {
        let guarded = self.state.borrow().guards(&key);
        if !guarded {
            self.get(&key)?;
        }
        self.state.borrow_mut().writes.insert(key, value);
        Ok(())
    }

    /// Commits the writes if nothing read changed since the snapshot. A work that wrote
    /// nothing has nothing to commit: its reads were one consistent view.
    pub(super) fn commit(self) -> Result<Outcome, StorageError> {
        let s = self.state.into_inner();
        if s.writes.is_empty() {
            return Ok(Outcome::Committed);
        }
        let guard = |key: &str, rev: i64| {
            if rev == 0 {
                Compare::version(key, CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(key, CompareOp::Equal, rev)
            }
        };
        let mut compares: Vec<Compare> =
            s.keys.iter().map(|(k, (_, rev))| guard(k, *rev)).collect();
        compares.extend(
            s.ranges
                .iter()
                .filter(|(_, r)| r.guarded)
                .map(|(prefix, _)| {
                    Compare::mod_revision(prefix.as_str(), CompareOp::Less, s.revision + 1)
                        .with_prefix()
                }),
        );
        let mut ops = Vec::with_capacity(s.writes.len());
        for (key, w) in &s.writes {
            match w {
                Some(v) => {
                    if !s.keys.contains_key(key) {
                        // Seen only in a range: compared by name too (see the module's comment).
                        let (_, rev) = s.in_ranges(key).unwrap_or((None, 0));
                        compares.push(guard(key, rev));
                    }
                    ops.push(TxnOp::put(key.as_str(), v.clone(), None));
                }
                None => ops.push(TxnOp::delete(key.as_str(), None)),
            }
        }
        // etcd refuses a transaction whose compares, or whose operations, are more than its
        // --max-txn-ops (128 by default); ours stay within half of that.
        if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
            return Err(StorageError::Backend(
                format!(
                    "this change reads {} and writes {} records, more than one etcd transaction \
                     here may hold ({MAX_TXN_OPS} of each); make it in smaller steps (for a \
                     security group, delete some of its rules first)",
                    compares.len(),
                    ops.len()
                )
                .into(),
            ));
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self.doors.call(|kv| async move { kv.txn(txn).await })?;
        Ok(if resp.succeeded() {
            Outcome::Committed
        } else {
            Outcome::Lost
        })
    }

    /// Reads `key` (or every key under it, with `prefix`) at the snapshot's revision, fixing
    /// that revision if this is the work's first read.
    fn read(&self, key: &str, prefix: bool) -> Result<Vec<KeyValue>, StorageError> {
        let revision = self.state.borrow().revision;
        let key = key.to_owned();
        let read = self
            .doors
            .call(move |kv| async move { kv.read_at(key, prefix, revision).await });
        match read {
            Ok((kvs, at)) => {
                self.state.borrow_mut().revision = at;
                Ok(kvs)
            }
            Err(ReadError::Compacted(e)) => {
                self.state.borrow_mut().compacted = true;
                Err(e)
            }
            Err(ReadError::Storage(e)) => Err(e),
        }
    }
}

/// Why a read at a revision failed.
enum ReadError {
    /// etcd no longer keeps the revision (it compacted past it).
    Compacted(StorageError),
    Storage(StorageError),
}

impl From<StorageError> for ReadError {
    fn from(e: StorageError) -> Self {
        ReadError::Storage(e)
    }
}

impl Kv {
    /// `key`, or every key under it, at `revision` (the newest when 0), and the revision
    /// read at.
    async fn read_at(
        &self,
        key: String,
        prefix: bool,
        revision: i64,
    ) -> Result<(Vec<KeyValue>, i64), ReadError> {
        let resp = self
            .etcd
            .run(|mut c| {
                let key = key.clone();
                let mut options = GetOptions::new().with_revision(revision);
                if prefix {
                    options = options.with_prefix();
                }
                async move { c.get(key, Some(options)).await }
            })
            .await;
        match resp {
            Ok(resp) => {
                // With a revision asked for, the header holds the store's current one instead.
                let at = if revision > 0 {
                    revision
                } else {
                    resp.header().map_or(0, |h| h.revision())
                };
                Ok((resp.kvs().to_vec(), at))
            }
            Err(e) if compacted(&e) => Err(ReadError::Compacted(backend(e))),
            Err(e) => Err(ReadError::Storage(backend(e))),
        }
    }
}

/// Whether etcd refused a read because its revision was compacted (gRPC OUT_OF_RANGE, 11).
fn compacted(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Etcd(etcd_client::Error::GRpcStatus(s)) if s.code() as i32 == 11)
}
