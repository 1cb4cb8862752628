//! Interactive serial consoles (Nova's remote consoles of type `serial`): a caller who may
//! act on a server gets a one-time token, and whoever presents it on outpostd's websocket
//! within [`TOKEN_TTL`] is joined to the server's console socket (its monitor's
//! `console.sock`, vmm's `serial.socket_path`).
//!
//! A token names one server of one project and is spent by its first use, as Nova's
//! consoleauth tokens are; only its SHA-256 is kept, so the store's memory never holds a
//! usable token. Tokens live in this daemon's memory: a restart invalidates them, which
//! costs a client one more request.

use super::store::{Server, VmState};
use super::{get, Fleet, ServerError};
use crate::context::RequestContext;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a token may wait for its use (Nova's `[consoleauth] token_ttl`).
pub const TOKEN_TTL: Duration = Duration::from_secs(600);

/// Tokens outstanding at once, beyond which the oldest are forgotten: a caller asking for
/// URLs in a loop costs bounded memory.
const MAX_TOKENS: usize = 4096;

/// What a token lets its bearer reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleGrant {
    pub server_id: String,
    pub project_id: String,
    expires: Instant,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConsoleError {
    #[error("The console token is unknown, used already or expired; ask for a new console URL.")]
    InvalidToken,
    #[error("Instance {0} could not be found.")]
    ServerGone(String),
    #[error("Instance {0} is not ready: its console is reachable while it is ACTIVE.")]
    NotReady(String),
    #[error("Instance {id} runs on box {host}: ask that box for its console.")]
    ElsewhereRun { id: String, host: String },
}

/// The outstanding tokens, by their hash.
#[derive(Debug, Default)]
pub struct ConsoleTokens {
    grants: Mutex<HashMap<[u8; 32], ConsoleGrant>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ConsoleTokens {
    /// Records `token` for `server_id` of `project_id`, valid until `now + TOKEN_TTL`.
    pub fn record(&self, token: &str, server_id: &str, project_id: &str, now: Instant) {
        let mut grants = self.grants.lock().expect("console tokens lock poisoned");
        grants.retain(|_, g| g.expires > now);
        if grants.len() >= MAX_TOKENS {
            if let Some(oldest) = grants
                .iter()
                .min_by_key(|(_, g)| g.expires)
                .map(|(k, _)| *k)
            {
                grants.remove(&oldest);
            }
        }
        grants.insert(
            digest(token),
            ConsoleGrant {
                server_id: server_id.to_owned(),
                project_id: project_id.to_owned(),
                expires: now + TOKEN_TTL,
            },
        );
    }

    /// Spends `token`: its grant if it is known and unexpired at `now`, and never again.
    pub fn redeem(&self, token: &str, now: Instant) -> Result<ConsoleGrant, ConsoleError> {
        let mut grants = self.grants.lock().expect("console tokens lock poisoned");
        grants
            .remove(&digest(token))
            .filter(|g| g.expires > now)
            .ok_or(ConsoleError::InvalidToken)
    }
}

impl ConsoleGrant {
    /// Whether the grant still reaches `server` as it is now: the same server, still of the
    /// project the token was issued in, running on this box.
    pub fn reaches(&self, server: Option<&Server>, this_box: &str) -> Result<(), ConsoleError> {
        let gone = || ConsoleError::ServerGone(self.server_id.clone());
        let s = server.ok_or_else(gone)?;
        if s.id != self.server_id || s.project_id != self.project_id {
            return Err(gone());
        }
        if s.vm_state != VmState::Active {
            return Err(ConsoleError::NotReady(s.id.clone()));
        }
        match s.host.as_deref() {
            Some(h) if h != this_box => Err(ConsoleError::ElsewhereRun {
                id: s.id.clone(),
                host: h.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// A one-time token for `id`'s serial console, for a caller who may see the server (its
/// project's members, or an admin); the server must be ACTIVE.
pub fn serial_console(
    fleet: &Fleet,
    ctx: &RequestContext,
    id: &str,
) -> Result<String, ServerError> {
    let s = get(fleet, ctx, id)?;
    if s.vm_state != VmState::Active {
        return Err(ServerError::Conflict(
            ConsoleError::NotReady(s.id.clone()).to_string(),
        ));
    }
    let token = crate::random::token()?;
    fleet
        .console_tokens()
        .record(&token, &s.id, &s.project_id, Instant::now());
    Ok(token)
}

/// Spends `token` and returns the console socket of the server it was issued for.
pub fn open_serial(fleet: &Fleet, token: &str) -> Result<PathBuf, ConsoleError> {
    let grant = fleet.console_tokens().redeem(token, Instant::now())?;
    let server = fleet
        .servers()
        .server(&grant.server_id)
        .map_err(|_| ConsoleError::ServerGone(grant.server_id.clone()))?;
    grant.reaches(server.as_ref(), fleet.host())?;
    Ok(fleet.dir(&grant.server_id).console_sock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_spent_by_its_first_use() {
        let tokens = ConsoleTokens::default();
        let now = Instant::now();
        tokens.record("t1", "s1", "p1", now);
        let g = tokens.redeem("t1", now).unwrap();
        assert_eq!((g.server_id.as_str(), g.project_id.as_str()), ("s1", "p1"));
        assert_eq!(tokens.redeem("t1", now), Err(ConsoleError::InvalidToken));
        assert_eq!(
            tokens.redeem("never-issued", now),
            Err(ConsoleError::InvalidToken)
        );
    }

    #[test]
    fn a_token_expires_after_its_ttl() {
        let tokens = ConsoleTokens::default();
        let now = Instant::now();
        tokens.record("late", "s1", "p1", now);
        tokens.record("early", "s1", "p1", now);
        assert!(tokens
            .redeem("early", now + TOKEN_TTL - Duration::from_secs(1))
            .is_ok());
        assert_eq!(
            tokens.redeem("late", now + TOKEN_TTL),
            Err(ConsoleError::InvalidToken)
        );
    }

    #[test]
    fn outstanding_tokens_are_bounded_oldest_first() {
        let tokens = ConsoleTokens::default();
        let t0 = Instant::now();
        for n in 0..=MAX_TOKENS {
            let at = t0 + Duration::from_millis(n as u64);
            tokens.record(&format!("t{n}"), "s1", "p1", at);
        }
        let at = t0 + Duration::from_secs(1);
        assert_eq!(tokens.redeem("t0", at), Err(ConsoleError::InvalidToken));
        assert!(tokens.redeem("t1", at).is_ok());
        assert!(tokens.redeem(&format!("t{MAX_TOKENS}"), at).is_ok());
    }

    fn server(id: &str, project: &str, vm: VmState, host: &str) -> Server {
        let mut s = crate::compute::servers::store::conformance::server(id, project, 0);
        s.vm_state = vm;
        s.host = Some(host.to_owned());
        s
    }

    #[test]
    fn a_grant_reaches_only_its_servers_project_active_and_here() {
        let tokens = ConsoleTokens::default();
        let now = Instant::now();
        tokens.record("t", "s1", "p1", now);
        let g = tokens.redeem("t", now).unwrap();
        let ok = server("s1", "p1", VmState::Active, "box1");
        assert_eq!(g.reaches(Some(&ok), "box1"), Ok(()));
        let gone = ConsoleError::ServerGone("s1".into());
        assert_eq!(g.reaches(None, "box1"), Err(gone.clone()));
        let moved = server("s1", "p2", VmState::Active, "box1");
        assert_eq!(g.reaches(Some(&moved), "box1"), Err(gone.clone()));
        let other = server("s2", "p1", VmState::Active, "box1");
        assert_eq!(g.reaches(Some(&other), "box1"), Err(gone));
        let stopped = server("s1", "p1", VmState::Stopped, "box1");
        assert_eq!(
            g.reaches(Some(&stopped), "box1"),
            Err(ConsoleError::NotReady("s1".into()))
        );
        assert!(matches!(
            g.reaches(Some(&ok), "box2"),
            Err(ConsoleError::ElsewhereRun { .. })
        ));
    }
}
