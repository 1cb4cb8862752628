//! Where volumes live. A volume's file is on one box, its **home** (docs/cluster.md, "What
//! lives where"); only that box makes, grows, snapshots and removes it. A box alone homes
//! every volume; in a site a new volume's home is picked when it is asked for, and any box
//! may record a change that the home then carries out ([`super::reconcile`]).
//!
//! [`Homes`] also keeps the ids this box is working on, so a change begun in a request and
//! the reconciler's next pass never both act on one file.

use super::VolumeError;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// How a site picks the home of a new volume that no server build makes.
pub trait HomePicker: Send + Sync {
    /// The enabled, up box with the most free disk (in `zone` when one is asked for), ties
    /// to `me` and then to the lowest name; None when no box qualifies.
    fn pick_home(&self, zone: Option<&str>, me: &str) -> Result<Option<String>, String>;
}

/// The zone a box alone is in (Cinder's default name).
pub const ZONE: &str = "nova";

pub struct Homes {
    me: String,
    /// None on a box alone.
    site: Option<Arc<dyn HomePicker>>,
    busy: Mutex<BTreeSet<String>>,
}

impl Homes {
    /// A box alone: every volume is its own.
    pub fn alone(me: &str) -> Homes {
        Homes {
            me: me.to_owned(),
            site: None,
            busy: Mutex::default(),
        }
    }

    /// A member of a site, which picks new volumes' homes with `picker`.
    pub fn in_site(me: &str, picker: Arc<dyn HomePicker>) -> Homes {
        Homes {
            me: me.to_owned(),
            site: Some(picker),
            busy: Mutex::default(),
        }
    }

    /// This box's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether boxes share Cinder's records.
    pub fn is_site(&self) -> bool {
        self.site.is_some()
    }

    /// Whether the file of a record homed at `home` is on this box. A record with no home was
    /// written by a box alone before homes were recorded: its own.
    pub fn holds(&self, home: &str) -> bool {
        home == self.me || (home.is_empty() && self.site.is_none())
    }

    /// The home of a new volume asked for in `zone`.
    pub fn pick(&self, zone: Option<&str>) -> Result<String, VolumeError> {
        let Some(site) = &self.site else {
            return match zone {
                Some(z) if z != ZONE => Err(VolumeError::InvalidInput(format!(
                    "Availability zone '{z}' is invalid; the only zone is '{ZONE}'"
                ))),
                _ => Ok(self.me.clone()),
            };
        };
        match site.pick_home(zone, &self.me) {
            Ok(Some(home)) => Ok(home),
            Ok(None) => Err(VolumeError::NoHome(match zone {
                Some(z) => format!("no enabled box that is up is in availability zone '{z}'"),
                None => "no box of the site is enabled and up".to_owned(),
            })),
            Err(e) => Err(VolumeError::NoHome(format!("cannot read the boxes: {e}"))),
        }
    }

    /// Marks `id` as worked on by this box until the returned guard is dropped; None when it
    /// already is.
    pub fn start(self: &Arc<Self>, id: &str) -> Option<Busy> {
        let fresh = lock(&self.busy).insert(id.to_owned());
        fresh.then(|| Busy {
            homes: self.clone(),
            id: id.to_owned(),
        })
    }
}

fn lock(busy: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    busy.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A volume or snapshot this box is working on; the work is over when it is dropped.
pub struct Busy {
    homes: Arc<Homes>,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.homes.busy).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<&'static str>);

    impl HomePicker for Fixed {
        fn pick_home(&self, _: Option<&str>, _: &str) -> Result<Option<String>, String> {
            Ok(self.0.map(str::to_owned))
        }
    }

    #[test]
    fn a_box_alone_homes_everything_and_a_member_only_its_own() {
        let alone = Homes::alone("box1");
        assert!(alone.holds("box1") && alone.holds(""));
        assert_eq!(alone.pick(None).unwrap(), "box1");
        assert!(matches!(
            alone.pick(Some("far")),
            Err(VolumeError::InvalidInput(_))
        ));

        let member = Homes::in_site("box1", Arc::new(Fixed(Some("box3"))));
        assert!(member.holds("box1"));
        assert!(!member.holds("") && !member.holds("box3"));
        assert_eq!(member.pick(None).unwrap(), "box3");
        let stranded = Homes::in_site("box1", Arc::new(Fixed(None)));
        assert!(matches!(
            stranded.pick(Some("far")),
            Err(VolumeError::NoHome(why)) if why.contains("'far'")
        ));
    }

    #[test]
    fn one_worker_per_volume_at_a_time() {
        let homes = Arc::new(Homes::alone("box1"));
        let first = homes.start("v1");
        assert!(first.is_some());
        assert!(homes.start("v1").is_none());
        drop(first);
        assert!(homes.start("v1").is_some());
    }
}
