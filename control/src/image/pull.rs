//! Copies of image data pulled from the other boxes of a site (docs/cluster.md, "Images
//! across boxes"): Glance's own `GET /v2/images/{id}/file` on a box that holds a verified
//! copy, written through the image store's upload (a partial file, renamed into place only
//! when complete), checked against the image's MD5 and SHA-512 and only then recorded as this
//! box's verified copy. A transfer that does not match is refused: nothing is published or
//! recorded, and the next pass fetches again.
//!
//! Background pulls share one token bucket (`[cluster] image_pull_mbps`); a pull a server's
//! build or a download waits for goes unthrottled.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use outpost_image_store::{digest, ExpectedFormat, ImageStore};

use super::copies::CopyRule;
use super::fields;
use super::store::{Image, ImageCopy, ImageRecordStore, ImageStatus};
use crate::client::{Client, Endpoint};
use crate::context::RequestContext;
use crate::identity::store::IdentityStore;
use crate::store::StorageError;

/// How long the token a box calls its peers with lives; it is replaced a minute before.
const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// How often the bucket is refilled (a tenth of the rate each time).
const REFILL_EVERY: Duration = Duration::from_millis(100);

/// Another box of the site, as pulls reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Its API listener (Glance's download), pinned TLS when it speaks TLS.
    pub api: Endpoint,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("image {0} is gone or has no data recorded yet; nothing to pull")]
    NoData(String),
    #[error("no box that holds a verified copy of image {0} is up; try again when one is")]
    NoSource(String),
    #[error("pulling image {id} from {peer}: {reason}")]
    Transfer {
        id: String,
        peer: String,
        reason: String,
    },
    #[error("the copy of image {id} from {peer} was refused: {reason}")]
    Corrupt {
        id: String,
        peer: String,
        reason: String,
    },
    #[error("image {0} was deleted or its data replaced while it was pulled; the copy is dropped")]
    Changed(String),
    #[error("cannot mint a token to call the other boxes with: {0}")]
    Token(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Data(#[from] outpost_image_store::ImageError),
}

/// A token bucket of bytes, refilled every [`REFILL_EVERY`] with a tenth of its rate and
/// holding at most that much: a transfer may run one refill ahead, then waits.
#[derive(Debug)]
pub struct TokenBucket {
    per_refill: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket of `mbps` megabits per second.
    pub fn megabits(mbps: u32) -> TokenBucket {
        let bytes_per_sec = f64::from(mbps.max(1)) * 1_000_000.0 / 8.0;
        let per_refill = bytes_per_sec * REFILL_EVERY.as_secs_f64();
        TokenBucket {
            per_refill,
            state: Mutex::new((per_refill, Instant::now())),
        }
    }

    /// Takes `n` bytes' worth, sleeping for refills while the bucket is in debt.
    pub fn take(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= n as f64;
        loop {
            let ticks = (state.1.elapsed().as_nanos() / REFILL_EVERY.as_nanos()) as u32;
            if ticks > 0 {
                state.0 = (state.0 + self.per_refill * f64::from(ticks)).min(self.per_refill);
                state.1 += REFILL_EVERY * ticks;
            }
            if state.0 >= 0.0 {
                return;
            }
            std::thread::sleep(REFILL_EVERY);
        }
    }
}

/// A writer that takes from `bucket`, when there is one, before each write.
struct Throttled<'a, W> {
    inner: W,
    bucket: Option<&'a TokenBucket>,
}

impl<W: Write> Write for Throttled<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(b) = self.bucket {
            b.take(n);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Who this box calls its peers as: the site's admin (identity is shared by every box).
pub struct Caller {
    pub identity: Arc<dyn IdentityStore>,
    pub admin: RequestContext,
}

/// This box's pulls: what it needs to fetch a copy and record it. Cheap to share.
pub struct Puller {
    records: Arc<dyn ImageRecordStore>,
    images: Arc<ImageStore>,
    rule: Arc<CopyRule>,
    caller: Caller,
    bucket: TokenBucket,
    /// The site's other boxes that were up at the replicator's last look.
    peers: Mutex<Vec<Peer>>,
    token: Mutex<Option<(String, Instant)>>,
    /// Images being pulled now: a second pull of one waits for the first.
    in_flight: (Mutex<BTreeSet<String>>, Condvar),
}

impl Puller {
    pub fn new(
        records: Arc<dyn ImageRecordStore>,
        images: Arc<ImageStore>,
        rule: Arc<CopyRule>,
        caller: Caller,
        bucket: TokenBucket,
    ) -> Puller {
        Puller {
            records,
            images,
            rule,
            caller,
            bucket,
            peers: Mutex::new(Vec::new()),
            token: Mutex::new(None),
            in_flight: (Mutex::new(BTreeSet::new()), Condvar::new()),
        }
    }

    pub fn rule(&self) -> &CopyRule {
        &self.rule
    }

    pub fn records(&self) -> &dyn ImageRecordStore {
        self.records.as_ref()
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The other boxes that are up, as the replicator last saw them.
    pub fn set_peers(&self, peers: Vec<Peer>) {
        *self.peers.lock().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// Whether this box holds a verified copy of image `id` (recorded, and its file here).
    pub fn holds(&self, id: &str) -> Result<bool, PullError> {
        let mine = self
            .records
            .image_copies(id)?
            .iter()
            .any(|c| c.holder == self.rule.holder());
        Ok(mine && self.images.contains(id)?)
    }

    /// Makes sure this box holds a verified copy of image `id`, pulling one from a peer if
    /// it does not (through the bucket when `throttled`). The image's status afterwards.
    pub fn ensure(&self, id: &str, throttled: bool) -> Result<ImageStatus, PullError> {
        let _turn = self.turn(id);
        let image = self
            .records
            .image(id)?
            .filter(|i| i.status == ImageStatus::Saving || i.status.has_stored_data())
            .ok_or_else(|| PullError::NoData(id.to_owned()))?;
        let expected = Expected::of(&image)?;
        let copies = self.records.image_copies(id)?;
        let me = self.rule.holder();
        if self.images.contains(id)? {
            if copies.iter().any(|c| c.holder == me) {
                // Recorded again only to activate an image whose copies reached the count
                // after they were made (the site grew less than it was thought to be).
                let promote =
                    image.status == ImageStatus::Saving && copies.len() >= self.rule.needed();
                return if promote {
                    self.record(id, &expected)
                } else {
                    Ok(image.status)
                };
            }
            // Published but never recorded (a crash in between): trusted only once hashed.
            let file = self.images.open_image(id)?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let found = digest::hash_file(&file, len).map(|d| d.sha512_hex);
            if found.ok().as_deref() != Some(expected.sha512.as_str()) {
                self.images.delete_image(id)?;
            } else {
                return self.record(id, &expected);
            }
        }
        let holders: BTreeSet<&str> = copies.iter().map(|c| c.holder.as_str()).collect();
        let sources: Vec<Peer> = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|p| p.name != me && holders.contains(p.name.as_str()))
            .cloned()
            .collect();
        let mut last = PullError::NoSource(id.to_owned());
        for peer in &sources {
            match self.fetch(peer, &image, &expected, throttled) {
                Ok(()) => {
                    tracing::info!("image {id}: copy pulled from {} and verified", peer.name);
                    return self.record(id, &expected);
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Records this box's verified copy; a copy the records no longer want is removed.
    fn record(&self, id: &str, expected: &Expected) -> Result<ImageStatus, PullError> {
        let copy = ImageCopy {
            holder: self.rule.holder().to_owned(),
            size: expected.size,
            os_hash_value: expected.sha512.clone(),
        };
        match self
            .records
            .record_verified_copy(id, &copy, self.rule.needed())?
        {
            Some(status) => Ok(status),
            None => {
                self.images.delete_image(id)?;
                Err(PullError::Changed(id.to_owned()))
            }
        }
    }

    /// Downloads image data from `peer` into the store and checks it.
    fn fetch(
        &self,
        peer: &Peer,
        image: &Image,
        expected: &Expected,
        throttled: bool,
    ) -> Result<(), PullError> {
        let id = image.id.as_str();
        let transfer = |reason: String| PullError::Transfer {
            id: id.to_owned(),
            peer: peer.name.clone(),
            reason,
        };
        let token = self.token()?;
        let client = Client::new(peer.api.clone()).map_err(|e| transfer(e.to_string()))?;
        let size = u64::try_from(expected.size).unwrap_or(0);
        // Dropping `up` without finishing removes the partial file.
        let mut up = self.images.begin_upload(
            id,
            ExpectedFormat {
                disk_format: expected.disk_format,
                max_size: Some(size),
            },
        )?;
        let mut out = Throttled {
            inner: &mut up,
            bucket: throttled.then_some(&self.bucket),
        };
        let resp = client
            .download(
                &format!("/image/v2/images/{id}/file"),
                &[("X-Auth-Token", token.as_str())],
                &mut out,
            )
            .map_err(|e| transfer(e.to_string()))?;
        if resp.status != hyper::StatusCode::OK {
            return Err(transfer(format!(
                "{} answered {}: {}",
                peer.name,
                resp.status,
                resp.error_message()
            )));
        }
        let corrupt = |reason: String| PullError::Corrupt {
            id: id.to_owned(),
            peer: peer.name.clone(),
            reason,
        };
        let stored = up.finish(Some(&expected.md5)).map_err(|e| match e {
            outpost_image_store::ImageError::ChecksumMismatch { .. } => corrupt(e.to_string()),
            other => transfer(other.to_string()),
        })?;
        if stored.os_hash_sha512 != expected.sha512 {
            self.images.delete_image(id)?;
            return Err(corrupt(format!(
                "its SHA-512 is {}, not the image's {}",
                stored.os_hash_sha512, expected.sha512
            )));
        }
        Ok(())
    }

    /// The token this box calls its peers with, minted anew when near its end.
    fn token(&self) -> Result<String, PullError> {
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((value, expires)) = cached.as_ref() {
            if Instant::now() + TOKEN_MARGIN < *expires {
                return Ok(value.clone());
            }
        }
        let admin = &self.caller.admin;
        let issued = crate::identity::tokens::mint(
            self.caller.identity.as_ref(),
            &admin.user_id,
            admin.project_id.as_deref(),
            TOKEN_TTL,
        )
        .map_err(|e| PullError::Token(e.to_string()))?;
        *cached = Some((issued.value.clone(), Instant::now() + TOKEN_TTL));
        Ok(issued.value)
    }

    /// Waits until no other pull of image `id` runs, and marks it as running until the guard
    /// is dropped.
    fn turn(&self, id: &str) -> Turn<'_> {
        let (set, cv) = &self.in_flight;
        let mut running = set.lock().unwrap_or_else(PoisonError::into_inner);
        while running.contains(id) {
            running = cv.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        running.insert(id.to_owned());
        Turn {
            puller: self,
            id: id.to_owned(),
        }
    }
}

struct Turn<'a> {
    puller: &'a Puller,
    id: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let (set, cv) = &self.puller.in_flight;
        set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        cv.notify_all();
    }
}

/// What a copy of an image's stored data must be.
struct Expected {
    size: i64,
    md5: String,
    sha512: String,
    disk_format: outpost_image_store::DiskFormat,
}

impl Expected {
    fn of(image: &Image) -> Result<Expected, PullError> {
        let no_data = || PullError::NoData(image.id.clone());
        let (Some(size), Some(md5), Some(sha512), Some(format)) = (
            image.size,
            image.checksum.clone(),
            image.os_hash_value.clone(),
            image.disk_format.as_deref(),
        ) else {
            return Err(no_data());
        };
        let disk_format =
            fields::parse_disk_format("disk_format", format).map_err(|_| no_data())?;
        Ok(Expected {
            size,
            md5,
            sha512,
            disk_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::testing::fixture;
    use crate::image::store::ImageData;
    use crate::image::ImageVisibility;
    use crate::timestamp::Timestamp;

    /// A box of a two-box site whose records say `box1` holds image `i1` (512 bytes of 7).
    fn box2() -> (Puller, tempfile::TempDir) {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let images = Arc::new(ImageStore::open(dir.path().to_owned()).unwrap());
        let db = Arc::new(f.db.clone());
        let now = Timestamp::now();
        db.create_image(&Image {
            id: "i1".into(),
            name: None,
            status: ImageStatus::Saving,
            visibility: ImageVisibility::Public,
            owner: None,
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            min_disk: 0,
            min_ram: 0,
            protected: false,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            conversion: None,
            properties: Default::default(),
            tags: Default::default(),
            members: Default::default(),
            created_at: now,
            updated_at: now,
        })
        .unwrap();
        let mut d = digest::Hasher::new();
        d.update(&[7u8; 512]);
        let d = d.finish();
        let data = ImageData {
            size: 512,
            virtual_size: 512,
            checksum: d.md5_hex,
            os_hash_algo: "sha512".into(),
            os_hash_value: d.sha512_hex,
            disk_format: "raw".into(),
            conversion: None,
        };
        assert!(db.record_image_data("i1", &data, "box1", 2).unwrap());
        let caller = Caller {
            identity: Arc::new(f.db.clone()),
            admin: f.admin.clone(),
        };
        let rule = Arc::new(CopyRule::member("box2", 2));
        let puller = Puller::new(db, images, rule, caller, TokenBucket::megabits(200));
        (puller, dir)
    }

    fn publish(p: &Puller, bytes: &[u8]) {
        let mut up = p
            .images
            .begin_upload(
                "i1",
                ExpectedFormat {
                    disk_format: outpost_image_store::DiskFormat::Raw,
                    max_size: None,
                },
            )
            .unwrap();
        up.write_all(bytes).unwrap();
        up.finish(None).unwrap();
    }

    #[test]
    fn with_no_holder_up_there_is_nothing_to_pull_from() {
        let (p, _dir) = box2();
        assert!(matches!(p.ensure("i1", true), Err(PullError::NoSource(_))));
        p.set_peers(vec![Peer {
            name: "box3".into(),
            api: Endpoint::Tcp("127.0.0.1:9".parse().unwrap()),
        }]);
        assert!(matches!(p.ensure("i1", true), Err(PullError::NoSource(_))));
        assert!(!p.holds("i1").unwrap());
        assert!(matches!(p.ensure("nope", true), Err(PullError::NoData(_))));
    }

    #[test]
    fn a_file_left_unrecorded_counts_only_if_its_hash_is_the_images() {
        // Damaged: removed, and (no peer up) nothing recorded.
        let (p, _dir) = box2();
        publish(&p, &[8u8; 512]);
        assert!(matches!(p.ensure("i1", true), Err(PullError::NoSource(_))));
        assert!(!p.images.contains("i1").unwrap());
        assert_eq!(p.records.image_copies("i1").unwrap().len(), 1);
        // Sound: recorded as box2's copy, the second, which activates the image.
        publish(&p, &[7u8; 512]);
        assert_eq!(p.ensure("i1", true).unwrap(), ImageStatus::Active);
        assert!(p.holds("i1").unwrap());
    }

    #[test]
    fn the_bucket_holds_transfers_to_its_rate() {
        // 80 Mbit/s = 10 MB/s = 1 MB per refill; 3 MB take at least two refills.
        let bucket = TokenBucket::megabits(80);
        let start = Instant::now();
        for _ in 0..3 {
            bucket.take(1_000_000);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
