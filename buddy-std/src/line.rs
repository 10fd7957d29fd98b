//! [`Line`]: a diagnostic formatted on the stack and written with `write(2)`, for code that
//! must not allocate (inside an allocator).

use core::ffi::c_int;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;

use buddy_mmap::Errno;

/// A line of text built on the stack (truncated at 256 bytes) and written with one `write(2)`:
/// for messages from inside an allocator, which must not allocate (the C face's reports, and
/// a debug build's refused `dealloc`). Public as `buddy_std::malloc::Line`, with an example.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Writes the text to file descriptor `fd` with `write(2)` (retrying short writes and
    /// `EINTR`); gives up silently on other errors: a diagnostic must not fail its caller.
    /// It leaves `errno` as it found it, and a write to a pipe nobody reads fails with
    /// `EPIPE` instead of killing the program: `SIGPIPE` is blocked in the calling thread
    /// during the write and the one the write raised is taken back (a C program's default
    /// `SIGPIPE` action ends it; Rust programs ignore the signal).
    pub fn write_to(&self, fd: c_int) {
        let saved = errno();
        without_sigpipe(|| {
            let mut rest = self.as_bytes();
            while !rest.is_empty() {
                // SAFETY: `rest` is a valid, initialised byte slice for the call's duration.
                let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                match usize::try_from(n) {
                    Ok(n) if n > 0 => rest = rest.get(n..).unwrap_or(&[]),
                    _ if n < 0 && errno() == Errno::INTR.raw_os_error() => {}
                    _ => return,
                }
            }
        });
        set_errno(saved);
    }
}

/// Runs `f` with `SIGPIPE` blocked in the calling thread, then discards a `SIGPIPE` that
/// became pending during `f` (one pending before is left alone) and restores the thread's
/// signal mask. Only system calls: no allocation, safe inside an allocator.
fn without_sigpipe(f: impl FnOnce()) {
    let mut pipe = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises `pipe`; `sigaddset` takes a valid signal number.
    let pipe = unsafe {
        libc::sigemptyset(pipe.as_mut_ptr());
        libc::sigaddset(pipe.as_mut_ptr(), libc::SIGPIPE);
        pipe.assume_init()
    };
    // SAFETY: `sigpending` fills `pending` (it cannot fail with a valid pointer); then it
    // is initialised.
    let was_pending = unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    };
    // SAFETY: valid sets; `old` receives the current mask.
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, old.as_mut_ptr()) } != 0 {
        // Cannot happen with valid arguments; write anyway, as before.
        f();
        return;
    }
    f();
    // SAFETY: as above.
    let now_pending = unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    };
    if now_pending && !was_pending {
        let mut sig = 0;
        // SAFETY: `SIGPIPE` is blocked and pending, so `sigwait` takes it without waiting.
        unsafe { libc::sigwait(&pipe, &mut sig) };
    }
    // SAFETY: `old` was filled by the successful `pthread_sigmask` above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl fmt::Write for Line {
    /// Appends what fits; never fails (a truncated diagnostic beats none).
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + n),
            s.as_bytes().get(..n),
        ) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}

/// The calling thread's `errno`.
fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's `errno`, valid for the thread's
    // life; it neither allocates nor fails.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub(crate) fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}
