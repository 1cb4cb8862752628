//! The stock `openstack` client run as one user against a real outpostd's TCP listener (the
//! end-to-end harness's runner, `outpost_tests::openstack`).

use super::Daemon;
pub use outpost_tests::openstack::Openstack;

/// `openstack` as `user` of `project` (domain Default) against `d`'s TCP listener.
pub fn as_user(d: &Daemon, user: &str, password: &str, project: &str) -> Openstack {
    Openstack::new(
        &format!("http://{}/identity/v3", d.addr),
        user,
        password,
        project,
    )
}
