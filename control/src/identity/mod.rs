//! Keystone's part of the control service: who a caller is and what they may do. Password
//! authentication and bearer tokens ([`tokens`]), the service catalog ([`catalog`]), the
//! directory of projects, users and roles ([`directory`]) and the first-start bootstrap.

pub mod bootstrap;
pub mod catalog;
pub mod directory;
pub mod logins;
pub mod password;
pub mod store;
pub mod tokens;

#[cfg(test)]
pub(crate) mod testing;

use crate::random::RandomError;
use crate::store::StorageError;

/// Keystone's single domain; users and projects all live in it.
pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

/// The roles every deployment has; `admin` implies `member`, which implies `reader`
/// (Keystone's default implied-role chain since Rocky).
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_READER: &str = "reader";
pub const BUILTIN_ROLES: [&str; 3] = [ROLE_ADMIN, ROLE_MEMBER, ROLE_READER];

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No token, or a token that is unknown, expired or revoked; deliberately vague.
    #[error("The request you have made requires authentication.")]
    Unauthenticated,
    /// Wrong user, password, domain or scope; Keystone says no more than this either.
    #[error("The request you have made requires authentication.")]
    InvalidCredentials,
    #[error("Expecting to find {field} in {within}. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.")]
    MissingField {
        field: &'static str,
        within: &'static str,
    },
    #[error("Invalid input for field '{field}': {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("Attempted to authenticate with an unsupported method.")]
    UnsupportedMethod,
    /// The token named by X-Subject-Token is unknown, expired or revoked (its value is
    /// a secret, so it is not repeated in the message).
    #[error("Could not find token.")]
    TokenNotFound,
    #[error("You are not authorized to perform the requested action: identity:{0}.")]
    Forbidden(&'static str),
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    #[error(
        "Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}."
    )]
    Duplicate { kind: &'static str, name: String },
    /// Refused before the password was checked: a locked-out user, a throttled address, or
    /// too many logins being checked.
    #[error(transparent)]
    LoginRefused(#[from] logins::LoginRefused),
    #[error("cannot hash the password: {0}")]
    PasswordHash(String),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IdentityError {
    /// A name already taken by another record of `kind`.
    pub fn duplicate(kind: &'static str, name: &str) -> IdentityError {
        IdentityError::Duplicate {
            kind,
            name: name.to_owned(),
        }
    }

    /// No record of `kind` with `id`.
    pub fn missing(kind: &'static str, id: &str) -> IdentityError {
        IdentityError::NotFound {
            kind,
            id: id.to_owned(),
        }
    }
}
