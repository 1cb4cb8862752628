//! Limits on password logins, so that guessing costs the guesser and not the box:
//!
//! - **per user** (Keystone's `[security_compliance] lockout_failure_attempts` and
//!   `lockout_duration`): after that many failed logins in a row a user is locked out, with
//!   Keystone's answer, until the duration has passed since the last failure; a success
//!   resets the count;
//! - **per client address**: more than `address_failures` failed logins from one address
//!   within `address_window` and that address gets 429 without a password check until the
//!   window has passed;
//! - **per box**: at most `concurrent_checks` argon2 verifications at once (each takes 19 MiB
//!   and tens of milliseconds of a core) and at most `waiting_checks` waiting for one; a login
//!   beyond that is answered 429 at once instead of queueing without bound. One address has
//!   one check running at a time and at most [`WAITING_PER_ADDRESS`] waiting, so a flood from
//!   one client never holds every check while others wait behind it.
//!
//! The counts live in this outpostd's memory: a restart forgets them (Keystone keeps its user
//! counts in its database), and each box of a site counts its own logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How logins are limited (`[identity]` in outpostd's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins in a row that lock a user out; None: never (Keystone's default).
    pub lockout_failure_attempts: Option<u32>,
    /// How long a locked-out user stays locked after the last failure.
    pub lockout_duration: Duration,
    pub address_failures: u32,
    pub address_window: Duration,
    pub concurrent_checks: usize,
    pub waiting_checks: usize,
}

/// Keystone's `lockout_duration` default.
pub const DEFAULT_LOCKOUT_DURATION: Duration = Duration::from_secs(1800);

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        LoginLimits {
            lockout_failure_attempts: None,
            lockout_duration: DEFAULT_LOCKOUT_DURATION,
            address_failures: 20,
            address_window: Duration::from_secs(60),
            concurrent_checks: cores.max(1),
            waiting_checks: 32,
        }
    }
}

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    /// Keystone's message and status (401) for a locked-out user.
    #[error("The account is locked for user: {0}.")]
    Locked(String),
    #[error("Too many failed logins from this address; retry in {} s.", .0.as_secs().max(1))]
    AddressThrottled(Duration),
    #[error("Too many logins are being checked; retry in a moment.")]
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// The first failure of an address's window; a user's last failure.
    at: Instant,
}

/// Logins from one address waiting for their turn, beyond which it gets 429 at once.
pub const WAITING_PER_ADDRESS: u32 = 4;

#[derive(Default)]
struct Slots {
    running: usize,
    waiting: usize,
    /// (running, waiting) per address with either above 0.
    per_address: HashMap<IpAddr, (u32, u32)>,
}

impl Slots {
    fn busy(&self, limits: &LoginLimits, from: Option<IpAddr>) -> bool {
        self.running >= limits.concurrent_checks
            || from.is_some_and(|a| self.per_address.get(&a).is_some_and(|e| e.0 >= 1))
    }

    fn address(&mut self, from: Option<IpAddr>) -> Option<&mut (u32, u32)> {
        from.map(|a| self.per_address.entry(a).or_default())
    }

    fn forget_if_idle(&mut self, from: Option<IpAddr>) {
        if let Some(a) = from {
            if self.per_address.get(&a) == Some(&(0, 0)) {
                self.per_address.remove(&a);
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    users: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

/// The most clients and users whose failures are remembered at once: older ones are dropped
/// first, so a flood of addresses cannot grow the tables without bound.
const MAX_REMEMBERED: usize = 65_536;

pub struct LoginGuard {
    limits: LoginLimits,
    counts: Mutex<Counts>,
    slots: Mutex<Slots>,
    freed: Condvar,
}

/// A password check's turn; the waiting logins look again when it is dropped.
pub struct CheckSlot<'a> {
    guard: &'a LoginGuard,
    from: Option<IpAddr>,
}

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        let mut slots = lock(&self.guard.slots);
        slots.running -= 1;
        if let Some(e) = slots.address(self.from) {
            e.0 -= 1;
        }
        slots.forget_if_idle(self.from);
        // Waiters wait on different conditions (their address's turn, or any turn).
        self.guard.freed.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> LoginGuard {
        LoginGuard {
            limits,
            counts: Mutex::new(Counts::default()),
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        }
    }

    /// Refuses a login from a throttled address before anything else is done for it.
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), LoginRefused> {
        self.check_address_at(address, Instant::now())
    }

    fn check_address_at(&self, address: Option<IpAddr>, now: Instant) -> Result<(), LoginRefused> {
        let Some(a) = address else { return Ok(()) };
        let counts = lock(&self.counts);
        match counts.addresses.get(&a) {
            Some(f)
                if f.count >= self.limits.address_failures
                    && now.duration_since(f.at) < self.limits.address_window =>
            {
                Err(LoginRefused::AddressThrottled(
                    self.limits.address_window - now.duration_since(f.at),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a locked-out user, then waits for a turn to check a password: a free check
    /// and, for a client at `from`, no other check of that address running. Refuses at once
    /// when too many are waiting (in all, or from that address).
    pub fn admit(
        &self,
        user_id: Option<&str>,
        from: Option<IpAddr>,
    ) -> Result<CheckSlot<'_>, LoginRefused> {
        if let Some(id) = user_id {
            self.check_user_at(id, Instant::now())?;
        }
        let limits = &self.limits;
        let mut slots = lock(&self.slots);
        if slots.busy(limits, from) {
            let address_waiting = from
                .and_then(|a| slots.per_address.get(&a))
                .map_or(0, |e| e.1);
            if slots.waiting >= limits.waiting_checks || address_waiting >= WAITING_PER_ADDRESS {
                return Err(LoginRefused::Busy);
            }
            slots.waiting += 1;
            if let Some(e) = slots.address(from) {
                e.1 += 1;
            }
            while slots.busy(limits, from) {
                slots = self
                    .freed
                    .wait(slots)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            slots.waiting -= 1;
            if let Some(e) = slots.address(from) {
                e.1 -= 1;
            }
        }
        slots.running += 1;
        if let Some(e) = slots.address(from) {
            e.0 += 1;
        }
        Ok(CheckSlot { guard: self, from })
    }

    fn check_user_at(&self, user_id: &str, now: Instant) -> Result<(), LoginRefused> {
        let Some(attempts) = self.limits.lockout_failure_attempts else {
            return Ok(());
        };
        let counts = lock(&self.counts);
        match counts.users.get(user_id) {
            Some(f)
                if f.count >= attempts
                    && now.duration_since(f.at) < self.limits.lockout_duration =>
            {
                Err(LoginRefused::Locked(user_id.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// A failed login: counts against the user (when it exists) and the address.
    pub fn failed(&self, user_id: Option<&str>, address: Option<IpAddr>) {
        self.failed_at(user_id, address, Instant::now());
    }

    fn failed_at(&self, user_id: Option<&str>, address: Option<IpAddr>, now: Instant) {
        let mut counts = lock(&self.counts);
        if let Some(id) = user_id.filter(|_| self.limits.lockout_failure_attempts.is_some()) {
            let lockout = self.limits.lockout_duration;
            let f = counts
                .users
                .entry(id.to_owned())
                .or_insert(Failures { count: 0, at: now });
            // A lockout that has run out starts the count again.
            if now.duration_since(f.at) >= lockout {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.at = now;
            prune(&mut counts.users, now, lockout);
        }
        if let Some(a) = address {
            let window = self.limits.address_window;
            let f = counts
                .addresses
                .entry(a)
                .or_insert(Failures { count: 0, at: now });
            if now.duration_since(f.at) >= window {
                *f = Failures { count: 0, at: now };
            }
            f.count = f.count.saturating_add(1);
            prune(&mut counts.addresses, now, window);
        }
    }

    /// A successful login: the user's count starts again (the address's does not: a guesser
    /// who also holds one password must not reset its own window).
    pub fn succeeded(&self, user_id: &str) {
        lock(&self.counts).users.remove(user_id);
    }
}

/// Drops entries whose time has run out once the table is full, and the oldest if that is
/// not enough.
fn prune<K: Clone + Eq + std::hash::Hash>(
    table: &mut HashMap<K, Failures>,
    now: Instant,
    keep: Duration,
) {
    if table.len() <= MAX_REMEMBERED {
        return;
    }
    table.retain(|_, f| now.duration_since(f.at) < keep);
    while table.len() > MAX_REMEMBERED {
        let Some(oldest) = table
            .iter()
            .min_by_key(|(_, f)| f.at)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        table.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limits() -> LoginLimits {
        LoginLimits {
            lockout_failure_attempts: Some(3),
            lockout_duration: Duration::from_secs(60),
            address_failures: 5,
            address_window: Duration::from_secs(10),
            concurrent_checks: 2,
            waiting_checks: 1,
        }
    }

    #[test]
    fn a_user_is_locked_after_the_attempts_until_the_duration_passes() {
        let g = LoginGuard::new(limits());
        let t0 = Instant::now();
        for n in 0..3 {
            assert_eq!(g.check_user_at("u1", t0 + Duration::from_secs(n)), Ok(()));
            g.failed_at(Some("u1"), None, t0 + Duration::from_secs(n));
        }
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            g.check_user_at("u1", later),
            Err(LoginRefused::Locked("u1".into()))
        );
        // Another user is not affected; the lock ends 60 s after the last failure.
        assert_eq!(g.check_user_at("u2", later), Ok(()));
        assert_eq!(g.check_user_at("u1", t0 + Duration::from_secs(62)), Ok(()));
        // A failure after the lock ran out counts from one again.
        g.failed_at(Some("u1"), None, t0 + Duration::from_secs(63));
        assert_eq!(g.check_user_at("u1", t0 + Duration::from_secs(64)), Ok(()));
    }

    #[test]
    fn a_success_resets_the_users_count() {
        let g = LoginGuard::new(limits());
        let t0 = Instant::now();
        g.failed_at(Some("u"), None, t0);
        g.failed_at(Some("u"), None, t0);
        g.succeeded("u");
        g.failed_at(Some("u"), None, t0);
        assert_eq!(g.check_user_at("u", t0), Ok(()));
    }

    #[test]
    fn no_lockout_unless_configured() {
        let g = LoginGuard::new(LoginLimits {
            lockout_failure_attempts: None,
            ..limits()
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            g.failed_at(Some("u"), None, t0);
        }
        assert_eq!(g.check_user_at("u", t0), Ok(()));
    }

    #[test]
    fn an_address_is_throttled_for_the_rest_of_its_window() {
        let g = LoginGuard::new(limits());
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(g.check_address_at(Some(a), t0), Ok(()));
            g.failed_at(None, Some(a), t0);
        }
        assert_eq!(
            g.check_address_at(Some(a), t0 + Duration::from_secs(4)),
            Err(LoginRefused::AddressThrottled(Duration::from_secs(6)))
        );
        assert_eq!(g.check_address_at(Some(b), t0), Ok(()));
        assert_eq!(g.check_address_at(None, t0), Ok(()));
        // The window over, the address starts again.
        assert_eq!(
            g.check_address_at(Some(a), t0 + Duration::from_secs(10)),
            Ok(())
        );
        g.failed_at(None, Some(a), t0 + Duration::from_secs(11));
        assert_eq!(
            g.check_address_at(Some(a), t0 + Duration::from_secs(11)),
            Ok(())
        );
    }

    #[test]
    fn checks_run_two_at_a_time_with_one_waiting_and_the_rest_refused() {
        let g = Arc::new(LoginGuard::new(limits()));
        let first = g.admit(None, None).unwrap();
        let second = g.admit(Some("u"), None).unwrap();
        let waiter = {
            let g = g.clone();
            std::thread::spawn(move || g.admit(None, None).map(|_| ()))
        };
        // The third waits; a fourth finds the queue full.
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&g.slots).waiting == 0 {
            assert!(Instant::now() < deadline, "the third login never waited");
            std::thread::yield_now();
        }
        assert_eq!(g.admit(None, None).err(), Some(LoginRefused::Busy));
        drop(first);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        drop(second);
        let slots = lock(&g.slots);
        assert_eq!((slots.running, slots.waiting), (0, 0));
    }

    #[test]
    fn one_address_has_one_check_running_and_others_go_by_it() {
        let g = Arc::new(LoginGuard::new(LoginLimits {
            waiting_checks: 16,
            ..limits()
        }));
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let running = g.admit(None, Some(flood)).unwrap();
        // The flood's next logins wait for its first, up to WAITING_PER_ADDRESS of them...
        let waiters: Vec<_> = (0..WAITING_PER_ADDRESS)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || g.admit(None, Some(flood)).map(|_| ()))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&g.slots).waiting < WAITING_PER_ADDRESS as usize {
            assert!(Instant::now() < deadline, "the flood's logins never waited");
            std::thread::yield_now();
        }
        // ...then it is refused, while another address gets the free check at once.
        assert_eq!(g.admit(None, Some(flood)).err(), Some(LoginRefused::Busy));
        let theirs = g.admit(None, Some(other)).unwrap();
        drop(theirs);
        drop(running);
        for w in waiters {
            assert_eq!(w.join().unwrap(), Ok(()));
        }
        assert!(lock(&g.slots).per_address.is_empty());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let g = LoginGuard::new(LoginLimits {
            address_window: Duration::from_secs(3600),
            ..limits()
        });
        let t0 = Instant::now();
        for n in 0..(MAX_REMEMBERED as u32 + 10) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(n));
            g.failed_at(None, Some(a), t0 + Duration::from_micros(u64::from(n)));
        }
        assert!(lock(&g.counts).addresses.len() <= MAX_REMEMBERED);
    }
}
