//! Logging macros that compile to nothing unless the `log` feature is on.
//!
//! With `log` on, splits and merges are logged at `trace`, cache flushes at `debug`, failed
//! requests and rejected frees at `warn`. A logger that allocates must not be backed by the
//! same heap it is logging: it would re-enter the heap while it is borrowed (or, through
//! [`LockedHeap`](crate::LockedHeap), deadlock on its lock).

macro_rules! trace {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            ::log::trace!($($t)*);
        }
    }};
}

macro_rules! debug {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            ::log::debug!($($t)*);
        }
    }};
}

macro_rules! log_warn {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            ::log::warn!($($t)*);
        }
    }};
}

pub(crate) use {debug, log_warn, trace};
