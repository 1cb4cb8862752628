//! A request as handlers see it ([`Call`]) and what they return ([`Reply`]): typed access to
//! path parameters, the query string and a JSON body, with every parse error a 400.

use super::body::StreamedFile;
use super::{ApiState, Fault};
use crate::context::RequestContext;
use hyper::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request as read off the wire.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: Method,
    /// Path and query, still percent-encoded.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The client's address on TCP (None on the unix socket).
    pub peer: Option<std::net::IpAddr>,
    /// The caller, when the server checked its token before reading the body.
    pub caller: Option<RequestContext>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    Empty,
    Json(Value),
    Text(String),
    /// Bytes streamed from an open file (image downloads), as `application/octet-stream`.
    File(StreamedFile),
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
        }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// One routed request, handed to its handler.
pub struct Call<'a> {
    pub state: &'a ApiState,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Path parameters, percent-decoded.
    pub params: Vec<(String, String)>,
    /// Query parameters in order, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The caller, for routes that need one.
    pub context: Option<RequestContext>,
    /// The negotiated microversion, for microversioned services.
    pub version: Option<super::microversion::ApiVersion>,
    /// For routes that stream their body: the body, not yet read (`body` is then empty).
    pub upload: std::cell::RefCell<Option<UploadBody>>,
    /// The client's address on TCP (None on the unix socket).
    pub peer: Option<std::net::IpAddr>,
}

/// A request body read as it arrives.
pub type UploadBody = Box<dyn std::io::Read + Send>;

impl Call<'_> {
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            // Route paths and handlers are written together; see routes::tests.
            .expect("handlers only ask for parameters their route declares")
    }

    /// The last value of query parameter `name`, as Nova and Keystone read it.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// This request's query parameters but `marker`, encoded again (`k=v` each), in order:
    /// what a paged list's links carry over from one page to the next.
    pub fn query_but_marker(&self) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect()
    }

    /// The query of the page after this one, which ends at `marker`.
    pub fn next_page_query(&self, marker: &str) -> String {
        let mut params = self.query_but_marker();
        params.push(format!("marker={}", percent_encode(marker)));
        params.join("&")
    }

    pub fn ctx(&self) -> &RequestContext {
        self.context
            .as_ref()
            .expect("token-protected routes always carry a context")
    }

    /// The body as `T`; malformed JSON, missing or mistyped fields and (where `T` says so)
    /// unknown fields are a 400.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Fault> {
        if self.body.is_empty() {
            return Err(Fault::bad_request(
                "The request body is empty; a JSON body is required.",
            ));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| Fault::bad_request(format!("Invalid request body: {e}")))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a reader: the streamed body of an upload route (taken, so only once), or
    /// the bytes already read for any other.
    pub fn body_reader(&self) -> Box<dyn std::io::Read + Send + '_> {
        match self.upload.borrow_mut().take() {
            Some(r) => r,
            None => Box::new(self.body),
        }
    }
}

/// Percent-decodes `s`; `+` is a space when `plus_is_space` (query strings). Invalid escapes
/// and bytes that do not form UTF-8 make the whole value invalid.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, Fault> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (percent_decode(k, true), percent_decode(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(Fault::bad_request(format!(
                    "Invalid query string parameter {pair:?}"
                ))),
            }
        })
        .collect()
}

/// Encodes a query component (RFC 3986 unreserved characters pass as they are).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_like_forms() {
        let q = parse_query("name=m1.tiny&minRam=512&x=a%20b+c&flag&=v").unwrap();
        assert_eq!(q[0], ("name".into(), "m1.tiny".into()));
        assert_eq!(q[2], ("x".into(), "a b c".into()));
        assert_eq!(q[3], ("flag".into(), String::new()));
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%ff").is_err());
        assert_eq!(percent_decode("hw%3Acpu+x", false).unwrap(), "hw:cpu+x");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
