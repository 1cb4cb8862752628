//! Random identifiers and secrets from the kernel's CSPRNG (getrandom): bearer tokens,
//! Keystone-style ids (32 hex digits), Nova-style UUIDs and generated passwords.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

#[derive(Debug, thiserror::Error)]
#[error("the kernel's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(RandomError)?;
    Ok(buf)
}

/// A bearer token: 32 random bytes, base64url without padding (43 characters).
pub fn token() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<32>()?))
}

/// 32 random bytes to derive a secret key from (a generated key pair's ed25519 seed).
pub fn key_seed() -> Result<zeroize::Zeroizing<[u8; 32]>, RandomError> {
    Ok(zeroize::Zeroizing::new(bytes::<32>()?))
}

/// A password for the bootstrap admin: 18 random bytes as 24 base64url characters.
pub fn password() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<18>()?))
}

/// 16 random bytes with the RFC 9562 §5.4 version (4) and variant bits set.
fn uuid_v4_bytes() -> Result<[u8; 16], RandomError> {
    let mut b = bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b)
}

/// Keystone's id form: a version-4 UUID as 32 lowercase hex digits, no dashes.
pub fn hex_id() -> Result<String, RandomError> {
    Ok(hex(&uuid_v4_bytes()?))
}

/// Nova's and Glance's id form: a version-4 UUID with dashes (8-4-4-4-12).
pub fn uuid() -> Result<String, RandomError> {
    let h = hex(&uuid_v4_bytes()?);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 0–20 ms, from the clock's sub-second part: how long a writer that lost a race to another
/// box waits before it reads and decides again, so that the two do not collide again in step.
/// Not a secret, so not from the random source.
pub fn retry_jitter() -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::time::Duration::from_micros(u64::from(nanos % 20_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_bytes_base64url_and_distinct() {
        let a = token().unwrap();
        let b = token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
    }

    #[test]
    fn ids_have_the_uuid4_shape() {
        let id = hex_id().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(&id[12..13], "4");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"));
        let u = uuid().unwrap();
        let parts: Vec<_> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(password().unwrap().len(), 24);
    }
}
