//! Password hashing: argon2id with the crate's default parameters (19 MiB, t=2, p=1, the
//! OWASP minimum), stored as PHC strings so parameters can change without a migration.

use super::IdentityError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub fn hash(password: &str) -> Result<String, IdentityError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::PasswordHash(e.to_string()))
}

/// True if `password` matches the PHC string `stored`. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!("a stored password hash cannot be parsed: {e}");
            false
        }
    }
}

/// Spends the time of one verification, so an unknown user name costs what a wrong password
/// does and response times do not tell which user names exist.
pub fn verify_nothing(password: &str) {
    let _ = verify(password, DECOY);
}

/// A well-formed PHC string (default parameters) that no password is known to match.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                     jQ7h8d0R5mUq4J0nQpP8ZbO0v6m7y0uQq4Hc2Wm8dW8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a phc string"));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash("correct horse").unwrap());
    }

    #[test]
    fn the_decoy_hash_parses_so_unknown_users_cost_a_full_verification() {
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}
