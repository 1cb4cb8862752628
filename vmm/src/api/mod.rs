//! The Firecracker-compatible REST API over a unix socket.
