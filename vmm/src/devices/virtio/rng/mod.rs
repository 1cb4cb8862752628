//! virtio-rng (virtio 1.2 §5.4): one request queue whose device-writable buffers are filled
//! from the host's /dev/urandom.

mod device;
mod event_handler;
pub mod request;

pub use device::{Rng, RngError, RngMetrics};

/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
