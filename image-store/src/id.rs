//! Identifiers that become file names: checked once here so no caller can reach outside the
//! store's folders (`../`, `/`, NUL, dot files that collide with `.partial`).

use std::fmt;

/// Longest id we accept. OpenStack ids are UUIDs (36 characters); the limit keeps a file name
/// plus our suffixes well under NAME_MAX (255) on every Linux filesystem.
pub const MAX_ID_LEN: usize = 128;

/// Why an id cannot be used as a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is empty; give a UUID or another name made of letters, digits and '-'")]
    Empty { kind: &'static str },
    #[error("{kind} id {shown} is {len} characters long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        kind: &'static str,
        shown: String,
        len: usize,
    },
    #[error(
        "{kind} id {shown} contains {bad:?}; only ASCII letters, digits and '-' are allowed \
         (ids become file names, so '/', '.' and the like are refused)"
    )]
    BadCharacter {
        kind: &'static str,
        shown: String,
        bad: char,
    },
    #[error("{kind} id {shown} starts with '-'; start it with a letter or a digit")]
    LeadingDash { kind: &'static str, shown: String },
}

/// An id that is safe to use as a single path component: `[A-Za-z0-9][A-Za-z0-9-]*`, at most
/// [`MAX_ID_LEN`] bytes. `kind` ("image", "volume", ...) only makes error messages specific.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafeId(String);

impl SafeId {
    /// Checks `id`; see the type's documentation for the accepted shape.
    pub fn new(kind: &'static str, id: &str) -> Result<Self, IdError> {
        // Show at most a prefix of hostile input in messages, escaped, so logs stay readable.
        let shown = format!("{:?}", id.chars().take(40).collect::<String>());
        if id.is_empty() {
            return Err(IdError::Empty { kind });
        }
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong {
                kind,
                shown,
                len: id.len(),
            });
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(IdError::BadCharacter { kind, shown, bad });
        }
        // A leading '-' would read as an option if the name ever reached a command line.
        if id.starts_with('-') {
            return Err(IdError::LeadingDash { kind, shown });
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text (also the file-name stem).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_simple_names() {
        for ok in ["0b6d4a3e-6c1f-4f43-9a77-1f0d4b1e2f3a", "a", "Image-1", "9"] {
            assert_eq!(SafeId::new("image", ok).map(|i| i.0), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_traversal_and_separators() {
        for bad in [
            "..", "../etc", "a/b", "/abs", ".partial", "a.raw", "a b", "a\0b", "é",
        ] {
            assert!(
                matches!(
                    SafeId::new("volume", bad),
                    Err(IdError::BadCharacter { .. })
                ),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn refuses_empty_long_and_dash_first() {
        assert_eq!(
            SafeId::new("image", ""),
            Err(IdError::Empty { kind: "image" })
        );
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            SafeId::new("image", &long),
            Err(IdError::TooLong { len, .. }) if len == MAX_ID_LEN + 1
        ));
        assert!(SafeId::new("image", &"a".repeat(MAX_ID_LEN)).is_ok());
        assert!(matches!(
            SafeId::new("server", "-rf"),
            Err(IdError::LeadingDash { .. })
        ));
    }

    #[test]
    fn messages_name_the_kind_and_the_rule() {
        let msg = SafeId::new("snapshot", "../x").unwrap_err().to_string();
        assert!(msg.contains("snapshot id \"../x\""), "{msg}");
        assert!(msg.contains("letters, digits and '-'"), "{msg}");
    }
}
