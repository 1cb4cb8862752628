//! outpostd's configuration: an optional TOML file (unknown keys refused) overlaid by
//! command-line flags, resolved into [`Settings`]. Every setting has an embedded default, so
//! the daemon starts with no file at all.
//!
//! ```toml
//! state_dir = "/var/lib/outpost"
//! [api]
//! socket = "/var/lib/outpost/outpostd.sock"  # default: <state_dir>/outpostd.sock
//! listen = "127.0.0.1:8080"                  # default: no TCP listener
//! public_url = "https://192.0.2.10:8080"     # default: http(s)://<listen>
//! tls = true              # default: on unless `listen` is loopback; never off for another
//! tls_cert = "/etc/outpost/api.crt"          # PEM; default: made at first start under
//! tls_key = "/etc/outpost/api.key"           #   <state_dir>/tls/, fingerprint logged
//! [identity]
//! token_ttl_secs = 43200
//! region = "RegionOne"
//! lockout_failure_attempts = 6        # Keystone's: failed logins that lock a user; default never
//! lockout_duration = 1800             # seconds a lockout lasts
//! failed_logins_per_address = 20      # per minute, then 429 for the rest of it
//! [policy]                            # a rule's roles instead of its default
//! "os_compute_api:servers:create" = ["admin"]
//! [quota]                             # OpenStack's default limits, overridden (-1: unlimited)
//! instances = 20
//! network = 10
//! ```
//!
//! The policy's rules and defaults are in [`crate::api::policy`].
//!
//! Servers add `[compute]` and `[guest]`, described in [`crate::compute::servers::config`];
//! Neutron networking adds `[network]` ([`crate::network::NetworkSettings`]).

use crate::api::policy::Policy;
use crate::cluster::{ClusterSection, ClusterSettings};
use crate::compute::servers::config::{ComputeSection, GuestSection, GuestSettings};
use crate::identity::logins::LoginLimits;
use crate::network::NetworkSettings;
use crate::quota::{Limit, QuotaDefaults, QuotaError};
use crate::tls::CertSource;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/outpost";
pub const SOCKET_NAME: &str = "outpostd.sock";
pub const DATABASE_NAME: &str = "outpost.db";
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
/// Keystone's default token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 12 * 3600;
/// Longest token lifetime accepted: a week.
const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path:?}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("identity.token_ttl_secs must be between 1 and {MAX_TOKEN_TTL_SECS}, not {0}")]
    TokenTtl(u64),
    #[error("api.public_url {0:?} must be an http:// or https:// URL")]
    PublicUrl(String),
    #[error(
        "api.tls = false with api.listen = {0}, which is reachable from off the box: outpostd \
         serves plain HTTP on loopback only (put your own TLS proxy in front of a loopback \
         listener, or leave api.tls unset)"
    )]
    PlainOffBox(SocketAddr),
    #[error("api.tls_cert and api.tls_key go together: set both, or neither for a generated pair")]
    TlsHalfPair,
    #[error("identity.region must not be empty")]
    Region,
    #[error("network.mtu must be between 68 and 9000, not {0}")]
    NetworkMtu(u32),
    #[error("[quota]: {0}")]
    Quota(QuotaError),
    #[error(transparent)]
    Policy(#[from] crate::api::policy::PolicyError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::settings::ClusterConfigError),
}

/// The file's shape. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub identity: IdentitySection,
    #[serde(default)]
    pub compute: ComputeSection,
    #[serde(default)]
    pub guest: GuestSection,
    #[serde(default)]
    pub network: NetworkSettings,
    /// Default quota limits by resource name (crate::quota::RESOURCES), over OpenStack's.
    #[serde(default)]
    pub quota: BTreeMap<String, Limit>,
    /// A site of several boxes (crate::cluster); absent on a box that stands alone.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Policy rule name → the roles that may use it instead of its default.
    #[serde(default)]
    pub policy: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub socket: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub tls: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    pub token_ttl_secs: Option<u64>,
    pub region: Option<String>,
    /// Keystone's `[security_compliance]` names: failed logins in a row that lock a user
    /// out (unset: never), and for how long (seconds).
    pub lockout_failure_attempts: Option<u32>,
    pub lockout_duration: Option<u64>,
    /// Failed logins from one address within a minute before it is refused (429) for the
    /// rest of that minute.
    pub failed_logins_per_address: Option<u32>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Command-line flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
}

/// The resolved settings the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    /// Explicit base URL for links and the catalog; None derives it from the bound address.
    pub public_url: Option<String>,
    /// The TCP listener's certificate; None serves it plain (loopback only).
    pub tls: Option<CertSource>,
    pub token_ttl: Duration,
    pub region: String,
    pub logins: LoginLimits,
    /// Resolved at start against the machine (`ComputeSettings::resolve`).
    pub compute: ComputeSection,
    pub guest: GuestSettings,
    pub network: NetworkSettings,
    /// Every project's limits where an admin set none.
    pub quota: QuotaDefaults,
    /// `Some` on a box of a site (etcd), `None` on one that stands alone (SQLite only).
    pub cluster: Option<ClusterSettings>,
    pub policy: Policy,
}

/// Whether and how the TCP listener speaks TLS: on whenever it is reachable from off the box,
/// with the operator's pair or one made at first start for the names clients use.
fn resolve_tls(
    api: &ApiSection,
    listen: Option<SocketAddr>,
    public_url: Option<&str>,
    state_dir: &Path,
) -> Result<Option<CertSource>, ConfigError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let off_box = !listen.ip().is_loopback();
    let files = match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => return Err(ConfigError::TlsHalfPair),
    };
    match api.tls {
        Some(false) if off_box => return Err(ConfigError::PlainOffBox(listen)),
        Some(false) => return Ok(None),
        None if !off_box && files.is_none() => return Ok(None),
        _ => {}
    }
    if let Some((cert, key)) = files {
        return Ok(Some(CertSource::Files { cert, key }));
    }
    // The names the certificate is for: the listener's address (unless it is every
    // address), the public URL's host, and loopback's.
    let mut names = Vec::new();
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    if let Some(host) = public_url.and_then(url_host) {
        names.push(host);
    }
    names.push("localhost".to_owned());
    names.dedup();
    Ok(Some(CertSource::Generated {
        dir: state_dir.join(crate::tls::GENERATED_DIR),
        names,
    }))
}

/// The host of an http(s) URL, without brackets or port.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

impl Settings {
    pub fn resolve(file: ConfigFile, flags: Overrides) -> Result<Settings, ConfigError> {
        let state_dir = flags
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let socket = flags
            .socket
            .or(file.api.socket.clone())
            .unwrap_or_else(|| state_dir.join(SOCKET_NAME));
        let public_url = flags
            .public_url
            .or(file.api.public_url.clone())
            .map(|u| {
                let trimmed = u.trim_end_matches('/').to_owned();
                let scheme_ok = trimmed.starts_with("http://") || trimmed.starts_with("https://");
                if scheme_ok && trimmed.len() > "https://".len() {
                    Ok(trimmed)
                } else {
                    Err(ConfigError::PublicUrl(u))
                }
            })
            .transpose()?;
        let listen = flags.listen.or(file.api.listen);
        let tls = resolve_tls(&file.api, listen, public_url.as_deref(), &state_dir)?;
        let ttl = file
            .identity
            .token_ttl_secs
            .unwrap_or(DEFAULT_TOKEN_TTL_SECS);
        if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
            return Err(ConfigError::TokenTtl(ttl));
        }
        let region = file
            .identity
            .region
            .unwrap_or_else(|| "RegionOne".to_owned());
        if region.trim().is_empty() {
            return Err(ConfigError::Region);
        }
        // 68: the IPv4 minimum (RFC 791); 9000: jumbo frames, the most the API accepts too.
        if !(68..=9000).contains(&file.network.mtu) {
            return Err(ConfigError::NetworkMtu(file.network.mtu));
        }
        let cluster = file.cluster.resolve()?;
        let quota = QuotaDefaults::with(&file.quota).map_err(ConfigError::Quota)?;
        let defaults = LoginLimits::default();
        let logins = LoginLimits {
            lockout_failure_attempts: file.identity.lockout_failure_attempts.filter(|&n| n > 0),
            lockout_duration: file
                .identity
                .lockout_duration
                .map_or(defaults.lockout_duration, Duration::from_secs),
            address_failures: file
                .identity
                .failed_logins_per_address
                .unwrap_or(defaults.address_failures)
                .max(1),
            ..defaults
        };
        Ok(Settings {
            state_dir,
            socket,
            listen,
            public_url,
            tls,
            token_ttl: Duration::from_secs(ttl),
            region,
            logins,
            guest: GuestSettings::resolve(&file.guest),
            compute: file.compute,
            network: file.network,
            quota,
            cluster,
            policy: Policy::new(file.policy)?,
        })
    }

    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join(DATABASE_NAME)
    }

    pub fn admin_password_path(&self) -> PathBuf {
        self.state_dir.join(ADMIN_PASSWORD_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn tls_is_on_off_the_box_and_off_on_loopback() {
        let settings = |text: &str| {
            Settings::resolve(parse(text).unwrap(), Overrides::default()).map(|s| s.tls)
        };
        assert_eq!(settings("").unwrap(), None);
        assert_eq!(
            settings("[api]\nlisten = \"127.0.0.1:8080\"").unwrap(),
            None
        );
        let Some(CertSource::Generated { dir, names }) =
            settings("[api]\nlisten = \"192.0.2.7:8774\"\npublic_url = \"https://api.site:8774/\"")
                .unwrap()
        else {
            panic!("an off-box listener got no generated certificate");
        };
        assert_eq!(dir, PathBuf::from("/var/lib/outpost/tls"));
        assert_eq!(names, ["192.0.2.7", "api.site", "localhost"]);
        let Some(CertSource::Generated { names, .. }) =
            settings("[api]\nlisten = \"[::]:8774\"").unwrap()
        else {
            panic!("a listener on every address got no certificate");
        };
        assert_eq!(names, ["localhost"]);
        assert_eq!(
            settings("[api]\nlisten = \"127.0.0.1:1\"\ntls_cert = \"/c\"\ntls_key = \"/k\"")
                .unwrap(),
            Some(CertSource::Files {
                cert: "/c".into(),
                key: "/k".into()
            })
        );
        assert!(matches!(
            settings("[api]\nlisten = \"10.0.0.1:1\"\ntls = false"),
            Err(ConfigError::PlainOffBox(_))
        ));
        assert!(matches!(
            settings("[api]\nlisten = \"10.0.0.1:1\"\ntls_cert = \"/c\""),
            Err(ConfigError::TlsHalfPair)
        ));
        assert_eq!(
            url_host("https://[fd00::1]:8774/x").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(url_host("http://h").as_deref(), Some("h"));
    }

    #[test]
    fn no_file_gives_the_embedded_defaults() {
        let s = Settings::resolve(ConfigFile::default(), Overrides::default()).unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/outpost"));
        assert_eq!(s.socket, PathBuf::from("/var/lib/outpost/outpostd.sock"));
        assert_eq!(s.listen, None);
        assert_eq!(s.token_ttl, Duration::from_secs(43200));
        assert_eq!(s.region, "RegionOne");
        assert_eq!(
            s.network,
            NetworkSettings {
                nat: true,
                mtu: 1500,
                manage_host: true,
                run_dir: PathBuf::from("/run/outpost/net"),
            }
        );
    }

    #[test]
    fn the_quota_section_overrides_openstacks_defaults_and_refuses_typos() {
        let s = Settings::resolve(ConfigFile::default(), Overrides::default()).unwrap();
        assert_eq!(s.quota.of("instances"), 10);
        assert_eq!(s.quota.of("port"), 500);
        let file = parse("[quota]\ninstances = 3\nvolumes_thick = 2\nnetwork = -1\n").unwrap();
        let s = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.quota.of("instances"), 3);
        assert_eq!(s.quota.of("volumes_thick"), 2);
        assert_eq!(s.quota.of("network"), -1);
        assert_eq!(s.quota.of("cores"), 20, "the rest keep OpenStack's");
        for bad in ["[quota]\ninstance = 3", "[quota]\nram = -2"] {
            let file = parse(bad).unwrap();
            assert!(
                matches!(
                    Settings::resolve(file, Overrides::default()),
                    Err(ConfigError::Quota(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_network_section_is_read() {
        let file = parse("[network]\nnat = false\nmtu = 9000\nmanage_host = false\n").unwrap();
        let s = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.network,
            NetworkSettings {
                nat: false,
                mtu: 9000,
                manage_host: false,
                run_dir: PathBuf::from("/run/outpost/net"),
            }
        );
        assert!(parse("[network]\nnatt = true").is_err());
        let tiny = parse("[network]\nmtu = 60").unwrap();
        assert!(matches!(
            Settings::resolve(tiny, Overrides::default()),
            Err(ConfigError::NetworkMtu(60))
        ));
    }

    #[test]
    fn the_policy_section_overrides_rules_by_name_and_refuses_unknown_ones() {
        let file = parse("[policy]\n\"os_compute_api:servers:create\" = [\"admin\"]\n").unwrap();
        let s = Settings::resolve(file, Overrides::default()).unwrap();
        assert_ne!(s.policy, Policy::default());
        let typo = parse("[policy]\n\"os_compute_api:servers:creat\" = [\"admin\"]\n").unwrap();
        let e = Settings::resolve(typo, Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("os_compute_api:servers:creat"),
            "{e}"
        );
        assert!(parse("[policy]\n\"image:get_images\" = \"admin\"\n").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse(
            "state_dir = \"/srv/o\"\n[api]\nlisten = \"127.0.0.1:1\"\npublic_url = \"http://h:1/\"\n\
             [identity]\ntoken_ttl_secs = 5\n",
        )
        .unwrap();
        let flags = Overrides {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            ..Overrides::default()
        };
        let s = Settings::resolve(file, flags).unwrap();
        assert_eq!(s.socket, PathBuf::from("/srv/o/outpostd.sock"));
        assert_eq!(s.listen, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(s.public_url.as_deref(), Some("http://h:1"));
        assert_eq!(s.token_ttl, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(parse("stat_dir = \"/x\"").is_err());
        assert!(parse("[api]\nlisen = \"1.2.3.4:5\"").is_err());
        assert!(parse("[api]\nlisten = \"not an address\"").is_err());
        assert!(parse("[identity]\ntoken_ttl_secs = -1").is_err());
        let zero = parse("[identity]\ntoken_ttl_secs = 0").unwrap();
        assert!(matches!(
            Settings::resolve(zero, Overrides::default()),
            Err(ConfigError::TokenTtl(0))
        ));
        let url = parse("[api]\npublic_url = \"ftp://x\"").unwrap();
        assert!(matches!(
            Settings::resolve(url, Overrides::default()),
            Err(ConfigError::PublicUrl(_))
        ));
    }
}
