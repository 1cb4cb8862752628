//! The fence (docs/cluster.md, "Fencing"): what this box does to its guests while it cannot
//! renew its lease, decided from two inputs only, the instant of the last acknowledged
//! keep-alive and the clock. No I/O: [`super::fencing`] feeds it and acts on its answers.
//!
//! The site sees the box dead [`super::membership::LEASE_TTL_SECS`] after its last renewal
//! and may then restart its guests elsewhere. Before that, the box stops them itself: paused
//! at [`PAUSE_AFTER`] (a network blip costs a pause, not a restart: renewals that come back
//! resume them), killed at [`KILL_AFTER`], 2 s before the lease can expire.

use std::time::{Duration, Instant};

/// Guests are paused this long after the last acknowledged keep-alive.
pub const PAUSE_AFTER: Duration = Duration::from_secs(5);
/// Guests are killed this long after it: a paused guest still holds its disks and
/// addresses, and the site may restart it elsewhere from 10 s on.
pub const KILL_AFTER: Duration = Duration::from_secs(8);
/// The deadline each monitor is given (`PUT /vm/deadline`) is this long after the last
/// acknowledged keep-alive: where this box would kill its guests. A monitor whose outpostd
/// hangs or dies pauses itself there; one restarted within a few seconds renews it first.
pub const MONITOR_DEADLINE_AFTER: Duration = KILL_AFTER;

/// What the box must do to the guests the site would restart elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceAction {
    Pause,
    Resume,
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Renewals arrive: the guests run.
    Clear,
    Paused,
    /// The guests were killed; what runs again is the returning box's business.
    Killed,
}

/// The state machine. Feed it every keep-alive acknowledgement ([`Fence::ack`]) and call
/// [`Fence::tick`] often (every 250 ms); act on what `tick` returns.
#[derive(Debug, Clone)]
pub struct Fence {
    state: State,
    last_ack: Instant,
    /// The latest monitor deadline handed out (see [`Fence::monitor_deadline`]): when it is
    /// past, monitors may have paused themselves even though this fence never did.
    promised: Option<Instant>,
}

impl Fence {
    /// A fence whose lease was last known renewed at `last_ack` (when it was taken or
    /// reattached).
    pub fn new(last_ack: Instant) -> Fence {
        Fence {
            state: State::Clear,
            last_ack,
            promised: None,
        }
    }

    /// A keep-alive sent at `sent` was acknowledged. Sending time, not arrival: the lease
    /// was renewed no earlier than the request left, so counting from it is the safe side.
    pub fn ack(&mut self, sent: Instant) {
        self.last_ack = self.last_ack.max(sent);
    }

    pub fn last_ack(&self) -> Instant {
        self.last_ack
    }

    /// The deadline to give the monitors now (each second); None once it is past, since the
    /// kill is then due anyway.
    pub fn monitor_deadline(&mut self, now: Instant) -> Option<Duration> {
        let at = self.last_ack + MONITOR_DEADLINE_AFTER;
        let left = at.checked_duration_since(now).filter(|d| !d.is_zero())?;
        self.promised = Some(at);
        Some(left)
    }

    /// What to do at `now`, at most once per transition.
    pub fn tick(&mut self, now: Instant) -> Option<FenceAction> {
        let silent = now.saturating_duration_since(self.last_ack);
        // Monitors pause themselves at a deadline this fence handed out: if one has passed
        // (this outpostd was stopped or starved for that long), they may be paused.
        let self_paused = self.promised.is_some_and(|at| at <= now);
        let (next, action) = match self.state {
            State::Killed if silent < PAUSE_AFTER => (State::Clear, None),
            State::Killed => (State::Killed, None),
            _ if silent >= KILL_AFTER => (State::Killed, Some(FenceAction::Kill)),
            State::Clear if silent >= PAUSE_AFTER => (State::Paused, Some(FenceAction::Pause)),
            State::Clear if self_paused => (State::Clear, Some(FenceAction::Resume)),
            State::Clear => (State::Clear, None),
            State::Paused if silent < PAUSE_AFTER => (State::Clear, Some(FenceAction::Resume)),
            State::Paused => (State::Paused, None),
        };
        if action == Some(FenceAction::Resume) || next == State::Killed {
            // Resumed guests, or none left: no monitor is holding a lapsed deadline.
            self.promised = None;
        }
        self.state = next;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a fence over `secs` seconds in 250 ms ticks, with a keep-alive sent and
    /// acknowledged at every whole second for which `acked` is true. Returns each action
    /// with the time it was taken, in ms since the start.
    fn timeline(secs: u64, acked: impl Fn(u64) -> bool) -> Vec<(u64, FenceAction)> {
        let t0 = Instant::now();
        let mut fence = Fence::new(t0);
        let mut out = Vec::new();
        for ms in (0..=secs * 1000).step_by(250) {
            let now = t0 + Duration::from_millis(ms);
            if ms % 1000 == 0 && acked(ms / 1000) {
                fence.ack(now);
            }
            if ms % 1000 == 0 {
                fence.monitor_deadline(now);
            }
            if let Some(a) = fence.tick(now) {
                out.push((ms, a));
            }
        }
        out
    }

    #[test]
    fn renewals_that_keep_coming_change_nothing() {
        assert_eq!(timeline(30, |_| true), vec![]);
        // Gaps shorter than the pause point: still nothing.
        assert_eq!(timeline(30, |s| s % 4 == 0), vec![]);
    }

    #[test]
    fn acks_back_before_the_pause_point_change_nothing() {
        // Last ack at 2 s, the next at 6 s: 4 s of silence.
        assert_eq!(timeline(20, |s| !(3..=5).contains(&s)), vec![]);
    }

    #[test]
    fn a_four_second_blip_pauses_then_resumes() {
        // The link is down for 4 s from just after the ack at 2 s; the keep-alive in flight
        // and the reconnection cost a second each side: acks again from 8 s.
        assert_eq!(
            timeline(20, |s| !(3..=7).contains(&s)),
            vec![(7000, FenceAction::Pause), (8000, FenceAction::Resume)]
        );
    }

    #[test]
    fn a_nine_second_outage_pauses_at_five_and_kills_at_eight() {
        let got = timeline(20, |s| s <= 2 || s >= 12);
        assert_eq!(
            got,
            vec![(7000, FenceAction::Pause), (10_000, FenceAction::Kill)]
        );
    }

    #[test]
    fn a_kill_is_final_until_renewals_return() {
        // Silent from 2 s to 12 s: killed once; the acks from 12 s clear it without a
        // resume (there is nothing left to resume), and a second outage fences again.
        let got = timeline(40, |s| s <= 2 || (12..=20).contains(&s));
        assert_eq!(
            got,
            vec![
                (7000, FenceAction::Pause),
                (10_000, FenceAction::Kill),
                (25_000, FenceAction::Pause),
                (28_000, FenceAction::Kill),
            ]
        );
    }

    #[test]
    fn monitors_that_paused_themselves_are_resumed_when_renewals_return() {
        // This outpostd was stopped for 9 s (no ticks): the monitors' deadline lapsed at
        // 8 s. Its first tick after the stop sees a renewal (the lease is still its own).
        let t0 = Instant::now();
        let mut fence = Fence::new(t0);
        assert_eq!(fence.monitor_deadline(t0), Some(MONITOR_DEADLINE_AFTER));
        assert_eq!(fence.tick(t0), None);
        let back = t0 + Duration::from_secs(9);
        fence.ack(back);
        assert_eq!(fence.tick(back), Some(FenceAction::Resume));
        assert_eq!(fence.tick(back + Duration::from_millis(250)), None);
        // Stopped past its deadline and the lease not renewed yet: the kill is due.
        let mut fence = Fence::new(t0);
        fence.monitor_deadline(t0);
        assert_eq!(fence.tick(back), Some(FenceAction::Kill));
        assert_eq!(fence.monitor_deadline(back), None);
    }

    #[test]
    fn late_or_stale_acks_never_move_the_clock_back() {
        let t0 = Instant::now();
        let mut fence = Fence::new(t0 + Duration::from_secs(3));
        fence.ack(t0);
        assert_eq!(fence.last_ack(), t0 + Duration::from_secs(3));
        assert_eq!(
            fence.monitor_deadline(t0 + Duration::from_secs(4)),
            Some(MONITOR_DEADLINE_AFTER - Duration::from_secs(1))
        );
    }
}
