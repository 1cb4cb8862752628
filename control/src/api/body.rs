//! Bodies too large to hold in memory: image uploads are read as they arrive, on the blocking
//! thread that runs the handler ([`UploadReader`], a `std::io::Read` over hyper's body), and
//! image downloads are sent from the open file in chunks by a blocking reader feeding a small
//! channel ([`ResponseBody::Stream`]). Either way at most a few chunks are in memory, whatever
//! the size of the image.

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// An upload that sends nothing for this long is abandoned (its handler would otherwise wait
/// forever on a client that went quiet without closing).
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes per chunk of a download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;
/// Chunks queued between the file reader and the connection.
const DOWNLOAD_QUEUE: usize = 4;

/// A request body read incrementally from a blocking thread. A body that ends before its
/// declared `Content-Length`, a connection error, or a stall longer than
/// [`UPLOAD_IDLE_TIMEOUT`] is an `io::Error`, never a short read that looks complete.
pub struct UploadReader {
    body: Incoming,
    runtime: tokio::runtime::Handle,
    declared: Option<u64>,
    received: u64,
    chunk: Bytes,
    ended: bool,
}

impl UploadReader {
    /// `runtime` is the runtime serving the connection; `declared` the `Content-Length`.
    pub fn new(body: Incoming, runtime: tokio::runtime::Handle, declared: Option<u64>) -> Self {
        UploadReader {
            body,
            runtime,
            declared,
            received: 0,
            chunk: Bytes::new(),
            ended: false,
        }
    }

    /// Fetches the next data frame; false at the end of the body.
    fn next_chunk(&mut self) -> io::Result<bool> {
        loop {
            let body = &mut self.body;
            let frame = self
                .runtime
                .block_on(tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, body.frame()));
            let frame = match frame {
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no data for {} s after {} bytes",
                            UPLOAD_IDLE_TIMEOUT.as_secs(),
                            self.received
                        ),
                    ))
                }
                Ok(None) => {
                    self.ended = true;
                    return match self.declared {
                        Some(d) if self.received < d => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the body ended after {} of {d} bytes", self.received),
                        )),
                        _ => Ok(false),
                    };
                }
                Ok(Some(Err(e))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!(
                            "the request body broke off after {} bytes: {e}",
                            self.received
                        ),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers carry nothing we use.
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    self.received += data.len() as u64;
                    self.chunk = data;
                    return Ok(true);
                }
            }
        }
    }
}

impl Read for UploadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() && (self.ended || !self.next_chunk()?) {
            return Ok(0);
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// At most this much of a refused upload is read and discarded before the answer goes out.
const LINGER_LIMIT: u64 = 64 * 1024 * 1024;
/// And for at most this long.
const LINGER_TIME: Duration = Duration::from_secs(10);

impl Drop for UploadReader {
    /// A handler that answers without reading the whole body (409 for an image that is not
    /// queued, 400, ...) would otherwise close the connection under a client still sending:
    /// the client sees a broken pipe instead of the answer. So the rest of a body of known,
    /// bounded length is read and discarded first (a lingering close). The reader lives only
    /// on the blocking thread that handles the request, where blocking on the runtime is
    /// allowed.
    fn drop(&mut self) {
        let remaining = self.declared.map(|d| d.saturating_sub(self.received));
        if self.ended || !remaining.is_some_and(|r| r > 0 && r <= LINGER_LIMIT) {
            return;
        }
        let body = &mut self.body;
        let _ = self
            .runtime
            .block_on(tokio::time::timeout(LINGER_TIME, async {
                while let Some(Ok(_)) = body.frame().await {}
            }));
    }
}

/// A file a reply sends as its body, already open (so a concurrent delete cannot take it away
/// between the handler and the connection).
#[derive(Debug, Clone)]
pub struct StreamedFile {
    pub file: Arc<File>,
    pub len: u64,
}

impl StreamedFile {
    pub fn new(file: File, len: u64) -> StreamedFile {
        StreamedFile {
            file: Arc::new(file),
            len,
        }
    }
}

impl PartialEq for StreamedFile {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.len == other.len
    }
}

/// The body of every reply: in memory, or streamed from a file.
pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream {
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        len: u64,
    },
}

impl ResponseBody {
    pub fn full(b: Bytes) -> ResponseBody {
        ResponseBody::Full(Some(b))
    }

    /// Starts reading `f` on the blocking pool (needs a tokio runtime). The reader stops when
    /// the file ends or the connection drops the body.
    pub fn file(f: StreamedFile) -> ResponseBody {
        let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
        let len = f.len;
        tokio::task::spawn_blocking(move || {
            let mut offset = 0u64;
            while offset < f.len {
                let want = usize::try_from(f.len - offset)
                    .unwrap_or(usize::MAX)
                    .min(DOWNLOAD_CHUNK);
                let mut buf = vec![0u8; want];
                let item = match f.file.read_exact_at(&mut buf, offset) {
                    Ok(()) => {
                        offset += want as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                // A send error means the client went away; stop reading.
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        ResponseBody::Stream { chunks: rx, len }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream { chunks, .. } => chunks
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream { len, .. } => SizeHint::with_exact(*len),
        }
    }
}
