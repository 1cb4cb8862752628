//! The timerfd that drives a rate limiter's refills on the device event loop. Created at
//! build time (on the unfiltered main thread); the device thread only arms, disarms and
//! reads it (`timerfd_settime` and `read` in its seccomp list).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

/// A non-blocking CLOCK_MONOTONIC timerfd: a read after the timer was disarmed, or
/// between two expirations, returns WouldBlock instead of stalling the device thread.
#[derive(Debug)]
pub struct RefillTimer {
    fd: File,
}

impl RefillTimer {
    pub fn new() -> std::io::Result<RefillTimer> {
        // SAFETY: timerfd_create takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { File::from_raw_fd(fd) };
        Ok(RefillTimer { fd })
    }

    /// Fires every `period` from now on; a zero period disarms it.
    pub fn set_period(&self, period: Duration) -> std::io::Result<()> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(period.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(period.subsec_nanos()),
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: `spec` is a valid itimerspec that outlives the call; the old value is not
        // asked for (null); the fd is a timerfd this struct owns.
        let ret =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Clears the expirations; none pending is not an error.
    pub fn drain(&self) -> std::io::Result<()> {
        let mut count = [0u8; 8];
        match (&self.fd).read(&mut count) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for RefillTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_periodically_and_stops_when_disarmed() {
        let t = RefillTimer::new().unwrap();
        // Nothing pending: no block, no error.
        t.drain().unwrap();
        t.set_period(Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut count = [0u8; 8];
        assert_eq!((&t.fd).read(&mut count).unwrap(), 8);
        assert!(u64::from_ne_bytes(count) >= 2);
        t.set_period(Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let e = (&t.fd).read(&mut count).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}
