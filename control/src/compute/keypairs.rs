//! Key pairs (Nova's `os-keypairs`): a user's named OpenSSH public keys, imported or generated
//! here (the private half of a generated pair is returned once and never kept). A pair
//! belongs to one user and is seen by that user only; an admin may name another user
//! (microversion 2.10's `user_id`). Servers name a pair of their creator's by `key_name`.

use super::MAX_PAGE;
use crate::context::RequestContext;
use crate::quota::Quotas;
use crate::random::RandomError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use md5::{Digest, Md5};
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{Algorithm, LineEnding, PublicKey};

pub mod store;

pub use store::{KeyPair, KeyPairStore, KeyType};

#[derive(Debug, thiserror::Error)]
pub enum KeyPairError {
    #[error("Keypair {name} not found for user {user_id}")]
    NotFound { name: String, user_id: String },
    #[error("Key pair '{0}' already exists.")]
    NameExists(String),
    #[error("Keypair data is invalid: {0}")]
    Invalid(String),
    #[error(
        "Key pairs of type x509 are not supported by this appliance: import or generate an \
         ssh key pair."
    )]
    X509Unsupported,
    #[error("marker [{0}] not found")]
    MarkerNotFound(String),
    #[error("Policy doesn't allow os_compute_api:os-keypairs:{0} to be performed.")]
    Forbidden(&'static str),
    /// Nova's words for its `key_pairs` quota (a 403).
    #[error("Quota exceeded, too many key pairs.")]
    QuotaExceeded,
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("cannot encode the generated key pair: {0}")]
    Encode(ssh_key::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a create asks for, already parsed from its body.
#[derive(Debug, Clone)]
pub struct NewKeyPair {
    pub name: String,
    pub key_type: KeyType,
    /// None: a pair is generated and its private key returned.
    pub public_key: Option<String>,
    /// Whose pair it is (2.10); None: the caller's.
    pub user_id: Option<String>,
}

/// A created pair, with the private key when it was generated here.
#[derive(Debug)]
pub struct Created {
    pub pair: KeyPair,
    /// OpenSSH's private key format; held in memory only until the reply is written.
    pub private_key: Option<zeroize::Zeroizing<String>>,
}

/// Which pairs a listing wants, already parsed from the query string.
#[derive(Debug, Clone, Default)]
pub struct KeyPairQuery {
    /// Whose pairs (2.10); None: the caller's.
    pub user_id: Option<String>,
    pub limit: Option<usize>,
    /// The name of the last pair of the previous page.
    pub marker: Option<String>,
}

/// Whose pairs a request acts on: the caller's own, or (for an admin) the named user's.
fn owner(
    ctx: &RequestContext,
    user_id: Option<&str>,
    rule: &'static str,
) -> Result<String, KeyPairError> {
    match user_id {
        None => Ok(ctx.user_id.clone()),
        Some(u) if u == ctx.user_id || ctx.is_admin() => Ok(u.to_owned()),
        Some(_) => Err(KeyPairError::Forbidden(rule)),
    }
}

/// Nova's rule for names before microversion 2.92: 1 to 255 of letters, digits, `_`, `-` and
/// inner spaces.
fn check_name(name: &str) -> Result<(), KeyPairError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ');
    if name.is_empty() || name.len() > 255 {
        return Err(KeyPairError::Invalid(
            "Keypair name must be string and between 1 and 255 characters long".into(),
        ));
    }
    if !name.chars().all(safe) {
        return Err(KeyPairError::Invalid(
            "Keypair name contains unsafe characters".into(),
        ));
    }
    if name.trim() != name {
        return Err(KeyPairError::Invalid(
            "Keypair name has leading or trailing whitespace".into(),
        ));
    }
    Ok(())
}

/// Nova's fingerprint of an OpenSSH key: the MD5 of its wire encoding (RFC 4253 §6.6), as
/// colon-separated lowercase hex.
fn fingerprint(key: &PublicKey) -> Result<String, KeyPairError> {
    let blob = key
        .to_bytes()
        .map_err(|e| KeyPairError::Invalid(format!("failed to generate fingerprint: {e}")))?;
    let digest = Md5::digest(&blob);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Parses one `authorized_keys` line: ed25519, RSA and ECDSA keys are taken; certificates,
/// DSA (gone from OpenSSH) and hardware-backed keys are refused.
fn parse_public_key(line: &str) -> Result<PublicKey, KeyPairError> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
        KeyPairError::Invalid(format!(
            "failed to generate fingerprint: the public key is not one OpenSSH key line ({e})"
        ))
    })?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Rsa { .. } | Algorithm::Ecdsa { .. } => Ok(key),
        other => Err(KeyPairError::Invalid(format!(
            "keys of type {other} are not supported: use ssh-ed25519, ssh-rsa or ecdsa-sha2"
        ))),
    }
}

/// The fingerprint Nova gives the public key `line` (one `authorized_keys` line), or why the
/// line is refused: what an import checks, for callers that only want to vet a key.
pub fn fingerprint_of(line: &str) -> Result<String, KeyPairError> {
    fingerprint(&parse_public_key(line)?)
}

/// A new ed25519 pair from the kernel's random source, as (public line, private key).
fn generate(name: &str) -> Result<(PublicKey, zeroize::Zeroizing<String>), KeyPairError> {
    let seed = crate::random::key_seed()?;
    let mut private = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    private.set_comment(name);
    let pem = private
        .to_openssh(LineEnding::LF)
        .map_err(KeyPairError::Encode)?;
    Ok((private.public_key().clone(), pem))
}

/// Imports or generates a pair, within the `key_pairs` quota of the caller's project (which
/// Nova counts per user).
pub fn create(
    db: &dyn KeyPairStore,
    quotas: &Quotas,
    ctx: &RequestContext,
    new: NewKeyPair,
) -> Result<Created, KeyPairError> {
    let user_id = owner(ctx, new.user_id.as_deref(), "create")?;
    let limit = match &ctx.project_id {
        Some(project) => quotas.limit(project, "key_pairs")?,
        None => return Err(KeyPairError::Forbidden("create")),
    };
    check_name(&new.name)?;
    if new.key_type == KeyType::X509 {
        return Err(KeyPairError::X509Unsupported);
    }
    let (key, private_key) = match &new.public_key {
        Some(line) => (parse_public_key(line)?, None),
        None => {
            let (key, private) = generate(&new.name)?;
            (key, Some(private))
        }
    };
    let public_key = match &new.public_key {
        // Kept as the user wrote it (less edge whitespace), comment and all.
        Some(line) => line.trim().to_owned(),
        None => key.to_openssh().map_err(KeyPairError::Encode)?,
    };
    let pair = KeyPair {
        seq: 0,
        user_id,
        name: new.name,
        key_type: new.key_type,
        public_key,
        fingerprint: fingerprint(&key)?,
        created_at: Timestamp::now(),
    };
    Ok(Created {
        pair: db.create_key_pair(&pair, limit)?,
        private_key,
    })
}

/// The caller's pair `name` (or, for an admin, `user_id`'s).
pub fn get(
    db: &dyn KeyPairStore,
    ctx: &RequestContext,
    user_id: Option<&str>,
    name: &str,
) -> Result<KeyPair, KeyPairError> {
    let user_id = owner(ctx, user_id, "show")?;
    db.key_pair(&user_id, name)?
        .ok_or_else(|| KeyPairError::NotFound {
            name: name.to_owned(),
            user_id,
        })
}

/// One page of a user's pairs in name order, after the marker, at most `limit` (capped at
/// [`MAX_PAGE`]).
pub fn list(
    db: &dyn KeyPairStore,
    ctx: &RequestContext,
    q: &KeyPairQuery,
) -> Result<Vec<KeyPair>, KeyPairError> {
    let user_id = owner(ctx, q.user_id.as_deref(), "index")?;
    let all = db.key_pairs(&user_id)?;
    let start = match &q.marker {
        None => 0,
        Some(m) => {
            all.iter()
                .position(|k| &k.name == m)
                .ok_or_else(|| KeyPairError::MarkerNotFound(m.clone()))?
                + 1
        }
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    Ok(all.into_iter().skip(start).take(limit).collect())
}

pub fn delete(
    db: &dyn KeyPairStore,
    ctx: &RequestContext,
    user_id: Option<&str>,
    name: &str,
) -> Result<(), KeyPairError> {
    let user_id = owner(ctx, user_id, "delete")?;
    if !db.delete_key_pair(&user_id, name)? {
        return Err(KeyPairError::NotFound {
            name: name.to_owned(),
            user_id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
