//! A host tap interface, opened by name, that the control plane created beforehand. We
//! never create one: TUNSETIFF with an unknown name would, so the name is checked first and
//! a tap that appears out of nowhere (not persistent, so ours) is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::VNET_HDR_LEN;

const TUN_DEVICE: &str = "/dev/net/tun";

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{name:?} is not a valid interface name (1 to 15 bytes, no '/', whitespace or NUL)")]
    InvalidName { name: String },
    #[error("tap {name} does not exist (the host must create it before the VM starts)")]
    TapNotFound { name: String },
    #[error("cannot open {TUN_DEVICE}: {0}")]
    OpenTun(std::io::Error),
    #[error("tap {name} is in use by another process")]
    TapBusy { name: String },
    #[error("cannot attach to tap {name} (is it a tap in single-queue mode?): {source}")]
    Attach {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot configure tap {name}: {what}: {source}")]
    Configure {
        name: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// An open tap with IFF_VNET_HDR (12-byte virtio-net header in front of every frame),
/// non-blocking.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to the existing tap `name` as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, with
    /// a 12-byte vnet header (VERSION_1 layout, with `num_buffers`).
    pub fn open_named(name: &str) -> Result<Tap, TapError> {
        let valid = !name.is_empty()
            && name.len() < libc::IFNAMSIZ
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
        if !valid {
            return Err(TapError::InvalidName {
                name: name.to_owned(),
            });
        }
        if let Some(handed) = crate::jail::files::tap(name) {
            return Tap::handed_over(name, handed.map_err(TapError::OpenTun)?);
        }
        if !Path::new("/sys/class/net").join(name).exists() {
            return Err(TapError::TapNotFound {
                name: name.to_owned(),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(TapError::OpenTun)?;
        let tap = Tap {
            file,
            name: name.to_owned(),
        };

        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        let mut req = ifreq(name, flags as libc::c_short);
        // SAFETY: TUNSETIFF reads a `struct ifreq`; `req` is one, fully initialised, and
        // outlives the call. The fd is the /dev/net/tun file we just opened.
        let ret = unsafe { libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if ret < 0 {
            let source = std::io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EBUSY) => TapError::TapBusy {
                    name: name.to_owned(),
                },
                _ => TapError::Attach {
                    name: name.to_owned(),
                    source,
                },
            });
        }
        // The interface could have vanished between the check above and TUNSETIFF, in which
        // case the kernel just created a new, non-persistent one for us. Dropping the file
        // destroys it again.
        if tap.flags()? & libc::IFF_PERSIST == 0 {
            return Err(TapError::TapNotFound {
                name: name.to_owned(),
            });
        }
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// A tap its parent attached (TUNSETIFF, which a monitor without CAP_NET_ADMIN cannot
    /// do) and handed over: checked to be the tap mode we need, then made non-blocking.
    fn handed_over(name: &str, file: File) -> Result<Tap, TapError> {
        let tap = Tap {
            file,
            name: name.to_owned(),
        };
        let wanted = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if tap.flags()? & (wanted | libc::IFF_TUN) != wanted {
            return Err(TapError::Attach {
                name: name.to_owned(),
                source: std::io::Error::other(
                    "the handed-over descriptor is not attached as a tap with a vnet header",
                ),
            });
        }
        // SAFETY: F_GETFL and F_SETFL take and return plain flags on our own descriptor.
        let ret = unsafe {
            let flags = libc::fcntl(tap.file.as_raw_fd(), libc::F_GETFL);
            if flags < 0 {
                flags
            } else {
                libc::fcntl(
                    tap.file.as_raw_fd(),
                    libc::F_SETFL,
                    flags | libc::O_NONBLOCK,
                )
            }
        };
        if ret < 0 {
            return Err(tap.configure_error("O_NONBLOCK"));
        }
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    fn set_vnet_hdr_len(&self) -> Result<(), TapError> {
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points to
        // `hdr_len` for the duration of the call.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) };
        if ret < 0 {
            return Err(self.configure_error("TUNSETVNETHDRSZ"));
        }
        Ok(())
    }

    /// The interface flags the tap was attached with (TUNGETIFF).
    fn flags(&self) -> Result<libc::c_int, TapError> {
        let mut req = ifreq("", 0);
        // SAFETY: TUNGETIFF writes a `struct ifreq` through the pointer, which points to
        // `req`, valid and writable for the duration of the call.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNGETIFF, &mut req) };
        if ret < 0 {
            return Err(self.configure_error("TUNGETIFF"));
        }
        // SAFETY: TUNGETIFF filled in `ifru_flags`; every bit pattern is a valid c_short.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        // ifr_flags is a short; IFF_PERSIST etc. are defined as positive ints below 0x10000.
        Ok(libc::c_int::from(flags as u16))
    }

    /// Tells the kernel which offloads the guest accepts on receive (TUNSETOFFLOAD with
    /// TUN_F_* bits): the tap may then hand us partially checksummed and GSO frames.
    pub fn set_offload(&self, flags: libc::c_uint) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if ret < 0 {
            return Err(self.configure_error("TUNSETOFFLOAD"));
        }
        Ok(())
    }

    fn configure_error(&self, what: &'static str) -> TapError {
        TapError::Configure {
            name: self.name.clone(),
            what,
            source: std::io::Error::last_os_error(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (with its vnet header); `WouldBlock` when none is queued.
    pub fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame (with its vnet header).
    pub fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        (&self.file).write(frame)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn ifreq(name: &str, flags: libc::c_short) -> libc::ifreq {
    // SAFETY: `ifreq` is a C struct of integers, byte arrays and a union of those and
    // pointers; all-zero bytes are a valid value of each.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    req
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// A persistent tap made with `ip tuntap add`, deleted on drop (also when a test fails).
    pub(crate) struct TestTap {
        pub name: String,
    }

    impl TestTap {
        /// None when taps cannot be created here (no /dev/net/tun, no CAP_NET_ADMIN).
        pub(crate) fn create(tag: &str) -> Option<TestTap> {
            let name = format!("opv{}{}", tag, std::process::id() % 100_000);
            let ok = Command::new("ip")
                .args(["tuntap", "add", "dev", &name, "mode", "tap"])
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(TestTap { name })
        }

        pub(crate) fn ip(&self, args: &[&str]) {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?} failed");
        }
    }

    impl Drop for TestTap {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.name])
                .status();
        }
    }

    #[test]
    fn refuses_bad_and_unknown_names_without_creating_taps() {
        for bad in ["", "a/b", "x y", "0123456789abcdef", ".."] {
            assert!(
                matches!(Tap::open_named(bad), Err(TapError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let name = format!("opvnx{}", std::process::id() % 100_000);
        assert!(matches!(
            Tap::open_named(&name),
            Err(TapError::TapNotFound { .. })
        ));
        assert!(!Path::new("/sys/class/net").join(&name).exists());
    }

    #[test]
    fn opens_an_existing_tap_and_sets_offloads() {
        let Some(tap) = TestTap::create("o") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        let t = Tap::open_named(&tap.name).unwrap();
        assert_eq!(t.name(), tap.name);
        t.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
            .unwrap();
        t.set_offload(0).unwrap();
        // Nothing queued: a non-blocking read says so.
        let mut buf = [0u8; 2048];
        let err = t.read_frame(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // A second attach to a single-queue tap is refused.
        assert!(matches!(
            Tap::open_named(&tap.name),
            Err(TapError::TapBusy { .. })
        ));
        // An interface that is not a tap cannot be attached to.
        assert!(matches!(
            Tap::open_named("lo"),
            Err(TapError::Attach { .. })
        ));
    }
}
