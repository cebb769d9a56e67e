//! Waiting for a condition another process brings about (a daemon's socket, a BGP session, a
//! route), polling, with a deadline that fails loudly.

use std::{
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// How often [`until`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some` (that value is returned) or an error, for at most
/// `timeout`; then fails naming `what`.
pub fn until<T>(
    what: impl FnOnce() -> String,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what(),
                secs: timeout.as_secs(),
            });
        }
        thread::sleep(POLL);
    }
}
