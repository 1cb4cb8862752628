//! A client for the monitor's Firecracker-style API on its unix socket: one HTTP/1.1
//! request per connection (`Connection: close`), bounded by a timeout so a wedged monitor
//! cannot hang the server's supervisor.

use super::MonitorError;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest reply read: the monitor's answers are small JSON documents.
const MAX_REPLY_BYTES: u64 = 1024 * 1024;

pub struct MonitorApi {
    socket: PathBuf,
    timeout: Duration,
}

impl MonitorApi {
    pub fn new(socket: &Path, timeout: Duration) -> MonitorApi {
        MonitorApi {
            socket: socket.to_owned(),
            timeout,
        }
    }

    /// Whether something accepts connections on the socket.
    pub fn answers(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// `PUT path` with a JSON body; the monitor answers 204 on success.
    pub fn put(&self, path: &str, body: &Value) -> Result<(), MonitorError> {
        self.request("PUT", path, Some(body)).map(drop)
    }

    /// `PATCH path` with a JSON body; the monitor answers 204 on success.
    pub fn patch(&self, path: &str, body: &Value) -> Result<(), MonitorError> {
        self.request("PATCH", path, Some(body)).map(drop)
    }

    pub fn get(&self, path: &str) -> Result<Value, MonitorError> {
        let body = self.request("GET", path, None)?;
        serde_json::from_slice(&body).map_err(|e| MonitorError::Reply {
            path: path.to_owned(),
            message: format!("not JSON: {e}"),
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, MonitorError> {
        let failed = |source| MonitorError::Api {
            path: path.to_owned(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(failed)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(failed)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(failed)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
             Connection: close\r\nContent-Length: {}\r\n",
            payload.len()
        );
        if body.is_some() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        stream.write_all(request.as_bytes()).map_err(failed)?;
        let mut reply = Vec::new();
        stream
            .take(MAX_REPLY_BYTES)
            .read_to_end(&mut reply)
            .map_err(failed)?;
        let (status, body) = parse_reply(&reply).ok_or_else(|| MonitorError::Reply {
            path: path.to_owned(),
            message: "not an HTTP reply".into(),
        })?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        // Firecracker's error shape: {"fault_message": "..."}.
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["fault_message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        Err(MonitorError::Refused {
            path: path.to_owned(),
            status,
            message,
        })
    }
}

/// The status code and body of a complete HTTP/1.1 reply (with `Content-Length`, or read to
/// the end of the connection).
fn parse_reply(reply: &[u8]) -> Option<(u16, &[u8])> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&reply[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = &reply[end + 4..];
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length {
        body = body.get(..n)?;
    }
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let r =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 22\r\n\r\n{\"fault_message\":\"x\"}\n";
        let (status, body) = parse_reply(r).unwrap();
        assert_eq!(status, 400);
        assert_eq!(body, b"{\"fault_message\":\"x\"}\n");
        assert_eq!(
            parse_reply(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().0,
            204
        );
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_none());
        assert!(parse_reply(b"nonsense").is_none());
    }

    #[test]
    fn a_missing_socket_is_an_api_error() {
        let api = MonitorApi::new(Path::new("/nonexistent/api.sock"), Duration::from_secs(1));
        assert!(!api.answers());
        assert!(matches!(
            api.put("/actions", &serde_json::json!({})),
            Err(MonitorError::Api { .. })
        ));
    }
}
