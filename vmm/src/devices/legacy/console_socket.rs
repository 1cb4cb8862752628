//! The serial console's host side as a unix socket (`serial.socket_path`, like Cloud
//! Hypervisor's `--serial socket=`): one client at a time types into the UART's receive FIFO
//! and reads the guest's output. A newer client replaces the one connected, so a client that
//! hung without closing cannot keep the console from everyone else.
//!
//! Runs on the device event loop. Input is read only as fast as the guest drains the FIFO:
//! while it is full the client's socket is not watched (its own buffer, then its writes,
//! hold the rest), and the guest's reading the FIFO empty re-arms it. Output never waits for
//! the client (serial::SerialOutput).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;

use super::serial::SerialConsole;

/// The receive FIFO's size: no read takes more than it can hold.
const READ_CHUNK: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve the serial console on {path:?}: {source}")]
pub struct ConsoleSocketError {
    path: PathBuf,
    source: io::Error,
}

pub struct ConsoleSocket {
    listener: UnixListener,
    drained: EventFd,
    console: Arc<Mutex<SerialConsole>>,
    client: Option<Arc<File>>,
    /// The FIFO was full: the client is not watched until the guest drains it.
    waiting_for_room: bool,
}

impl ConsoleSocket {
    /// Binds `path` (a socket left by an earlier monitor is replaced), readable and
    /// writable by this process's user only: whoever connects types into the guest.
    pub fn bind(
        path: &Path,
        console: Arc<Mutex<SerialConsole>>,
    ) -> Result<ConsoleSocket, ConsoleSocketError> {
        let err = |source| ConsoleSocketError {
            path: path.to_owned(),
            source,
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let drained = console
            .lock()
            .expect("serial lock poisoned")
            .input_drained()
            .map_err(err)?;
        Ok(ConsoleSocket {
            listener,
            drained,
            console,
            client: None,
            waiting_for_room: false,
        })
    }

    fn accept(&mut self, ops: &mut EventOps) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("cannot accept a console client: {e}");
                    return;
                }
            };
            // The vCPU writes to it and must never block on it.
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!("cannot make the console client non-blocking: {e}");
                continue;
            }
            self.detach(ops);
            // As a File its reads and writes are read(2) and write(2), which every thread's
            // filter has, rather than a socket's recv and send.
            let client = Arc::new(File::from(OwnedFd::from(stream)));
            if let Err(e) = ops.add(Events::new(&*client, EventSet::IN)) {
                tracing::warn!("cannot watch the console client: {e}");
                continue;
            }
            self.lock_console().attach_client(Some(client.clone()));
            self.client = Some(client);
            self.waiting_for_room = false;
            tracing::info!("console client attached");
        }
    }

    fn detach(&mut self, ops: &mut EventOps) {
        if let Some(client) = self.client.take() {
            let _ = ops.remove(Events::empty(&*client));
            self.lock_console().attach_client(None);
            tracing::info!("console client detached");
        }
    }

    /// Moves what the client sent into the FIFO, as much as it has room for.
    fn pump(&mut self, ops: &mut EventOps) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let room = self.lock_console().input_room().min(READ_CHUNK);
        if room == 0 {
            // Level-triggered: watching a client whose input cannot be taken would spin.
            if ops.modify(Events::new(&*client, EventSet::empty())).is_ok() {
                self.waiting_for_room = true;
            }
            return;
        }
        let mut buf = [0u8; READ_CHUNK];
        match (&*client).read(&mut buf[..room]) {
            Ok(0) => self.detach(ops),
            Ok(n) => {
                self.lock_console().enqueue_input(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.detach(ops),
        }
    }

    fn lock_console(&self) -> std::sync::MutexGuard<'_, SerialConsole> {
        self.console.lock().expect("serial lock poisoned")
    }
}

impl MutEventSubscriber for ConsoleSocket {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.listener.as_raw_fd() {
            self.accept(ops);
        } else if fd == self.drained.as_raw_fd() {
            let _ = self.drained.read();
            if let (true, Some(client)) = (self.waiting_for_room, &self.client) {
                if ops.modify(Events::new(&**client, EventSet::IN)).is_ok() {
                    self.waiting_for_room = false;
                }
            }
        } else if self.client.as_ref().is_some_and(|c| c.as_raw_fd() == fd) {
            let set = events.event_set();
            if set.contains(EventSet::IN) {
                self.pump(ops);
            } else if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
                self.detach(ops);
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in [self.listener.as_raw_fd(), self.drained.as_raw_fd()] {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!("cannot watch the console socket: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::legacy::IrqLine;
    use event_manager::{EventManager, SubscriberOps};
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    const DATA: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;
    const IER_RDA: u8 = 0x01;
    const LSR_DATA_READY: u8 = 0x01;

    /// A UART whose output is collected, its interrupt line, and its socket on a loop.
    struct Rig {
        console: Arc<Mutex<SerialConsole>>,
        irq: EventFd,
        manager: EventManager<Arc<Mutex<ConsoleSocket>>>,
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let line = IrqLine(irq.try_clone().unwrap());
        let console = Arc::new(Mutex::new(
            SerialConsole::new(line, Box::new(io::sink())).unwrap(),
        ));
        let socket = ConsoleSocket::bind(&path, console.clone()).unwrap();
        let mut manager = EventManager::new().unwrap();
        manager.add_subscriber(Arc::new(Mutex::new(socket)));
        Rig {
            console,
            irq,
            manager,
            path,
            _dir: dir,
        }
    }

    impl Rig {
        fn turn(&mut self) {
            self.manager.run_with_timeout(100).unwrap();
        }

        fn guest_reads(&self) -> Vec<u8> {
            let mut c = self.console.lock().unwrap();
            let mut out = Vec::new();
            let mut b = [0u8];
            loop {
                c.read(LSR, &mut b);
                if b[0] & LSR_DATA_READY == 0 {
                    return out;
                }
                c.read(DATA, &mut b);
                out.push(b[0]);
            }
        }

        fn guest_writes(&self, bytes: &[u8]) {
            let mut c = self.console.lock().unwrap();
            for b in bytes {
                c.write(DATA, &[*b]);
            }
        }
    }

    #[test]
    fn a_client_types_into_the_fifo_and_reads_the_guests_output() {
        let mut rig = rig();
        rig.console.lock().unwrap().write(IER, &[IER_RDA]);
        let mut client = UnixStream::connect(&rig.path).unwrap();
        rig.turn();
        client.write_all(b"ls\n").unwrap();
        rig.turn();
        assert_eq!(rig.irq.read().unwrap(), 1, "the guest is interrupted");
        assert_eq!(rig.guest_reads(), b"ls\n");

        rig.guest_writes(b"bin\n");
        let mut got = [0u8; 4];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bin\n");
    }

    #[test]
    fn input_beyond_the_fifo_waits_for_the_guest_instead_of_being_dropped() {
        let mut rig = rig();
        let mut client = UnixStream::connect(&rig.path).unwrap();
        rig.turn();
        let typed: Vec<u8> = (0..200u8).collect();
        client.write_all(&typed).unwrap();
        let mut seen = Vec::new();
        for _ in 0..20 {
            rig.turn();
            seen.extend(rig.guest_reads());
            if seen.len() == typed.len() {
                break;
            }
        }
        assert_eq!(seen, typed);
    }

    #[test]
    fn a_new_client_replaces_the_old_one_and_a_stalled_one_never_blocks_the_guest() {
        let mut rig = rig();
        let mut old = UnixStream::connect(&rig.path).unwrap();
        rig.turn();
        let mut new = UnixStream::connect(&rig.path).unwrap();
        rig.turn();
        // The old client is closed by the monitor: it reads end-of-file.
        let mut buf = [0u8; 1];
        old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(old.read(&mut buf).unwrap(), 0);

        // The new one never reads: a MiB of output still goes through without blocking.
        rig.guest_writes(&vec![b'x'; 1 << 20]);
        new.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        new.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [b'x']);
    }
}
