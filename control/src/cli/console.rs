//! `outpost console attach SERVER`: the server's serial console on this terminal, through
//! the same websocket a remote-console URL names (api::console), as `virsh console` does:
//! the terminal is raw while attached, so the guest's shell gets every key, and Ctrl-]
//! detaches.

use super::{server, Api, CliError};
use clap::Subcommand;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Bytes;
use serde_json::json;
use std::io::{Read, Write};
use tokio_tungstenite::tungstenite::Message;

/// The byte that detaches (Ctrl-], `virsh console`'s and telnet's escape).
pub const DETACH: u8 = 0x1d;

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Attach this terminal to a server's serial console (Ctrl-] detaches).
    Attach { server: String },
}

pub fn run(api: &Api, cmd: ConsoleCommand) -> Result<String, CliError> {
    match cmd {
        ConsoleCommand::Attach { server } => attach(api, &server),
    }
}

/// The path and query of a console URL (`ws://host/serial-console?token=...`): the CLI
/// reaches the same websocket over its own connection to outpostd.
fn url_target(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?;
    rest.find('/').map(|i| &rest[i..])
}

/// What of `input` goes to the guest, and whether it asked to detach: everything before
/// the escape byte.
fn until_detach(input: &[u8]) -> (&[u8], bool) {
    match input.iter().position(|&b| b == DETACH) {
        Some(i) => (&input[..i], true),
        None => (input, false),
    }
}

fn attach(api: &Api, name_or_id: &str) -> Result<String, CliError> {
    let s = server::find(api, name_or_id)?;
    let id = s["id"].as_str().unwrap_or_default();
    let reply = api.post(
        &format!("/compute/v2.1/servers/{id}/remote-consoles"),
        &json!({"remote_console": {"protocol": "serial", "type": "serial"}}),
    )?;
    let url = reply["remote_console"]["url"].as_str().unwrap_or_default();
    let target = url_target(url)
        .ok_or_else(|| CliError::Console(format!("outpostd answered an unusable URL {url:?}")))?
        .to_owned();
    let client = api.client();
    client.block_on(async {
        let stream = client.connect().await?;
        let request = format!("ws://localhost{target}");
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| CliError::Console(e.to_string()))?;
        eprintln!("Connected to the serial console of {id}. Escape character is ^]");
        let raw = RawTerminal::enter();
        let ended = pump(ws).await;
        drop(raw);
        ended
    })?;
    Ok("\n".to_owned())
}

/// Keys to the guest, its output to stdout, until Ctrl-] or the console closes.
async fn pump<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> Result<(), CliError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_guest, mut from_guest) = ws.split();
    // stdin is read on a thread of its own: a blocking read there cannot hold up the end.
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        loop {
            match std::io::stdin().read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if keys_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            typed = keys.recv() => {
                let Some(typed) = typed else { break };
                let (send, detach) = until_detach(&typed);
                if !send.is_empty() {
                    let frame = Message::Binary(Bytes::copy_from_slice(send));
                    if to_guest.send(frame).await.is_err() {
                        break;
                    }
                }
                if detach {
                    let _ = to_guest.close().await;
                    break;
                }
            }
            shown = from_guest.next() => match shown {
                Some(Ok(Message::Binary(b))) => {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.flush();
                }
                Some(Ok(Message::Text(t))) => {
                    let _ = stdout.write_all(t.as_bytes());
                    let _ = stdout.flush();
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
    Ok(())
}

/// The terminal in raw mode (no echo, no line editing, no signals from keys) while it
/// lives; the settings it found are put back when it is dropped. Nothing when stdin is not
/// a terminal.
struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_is_reached_by_the_urls_path_and_query() {
        assert_eq!(
            url_target("ws://10.0.0.1:8774/serial-console?token=abc"),
            Some("/serial-console?token=abc")
        );
        assert_eq!(url_target("http://x/serial-console"), None);
        assert_eq!(url_target("ws://host-only"), None);
    }

    #[test]
    fn ctrl_right_bracket_detaches_and_what_came_before_it_is_sent() {
        assert_eq!(until_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(until_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(until_detach(b"\x1d"), (&b""[..], true));
    }
}
