//! RFC 3339 timestamps (UTC) without a date-time crate: the agent's healthz and the CNI plugin's
//! log lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339 (UTC, seconds).
pub fn seconds(t: SystemTime) -> String {
    let (date, _) = rfc3339_parts(t);
    format!("{date}Z")
}

/// RFC 3339 (UTC) with milliseconds, for log lines.
pub fn millis(t: SystemTime) -> String {
    let (date, millis) = rfc3339_parts(t);
    format!("{date}.{millis:03}Z")
}

/// `YYYY-MM-DDTHH:MM:SS` and the milliseconds. Civil-from-days: Howard Hinnant's algorithm.
fn rfc3339_parts(t: SystemTime) -> (String, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d_ = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!(
            "{y:04}-{m:02}-{d_:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
        d.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn millis_formats_a_known_instant() {
        assert_eq!(
            millis(UNIX_EPOCH + Duration::from_millis(1_700_000_000_042)),
            "2023-11-14T22:13:20.042Z"
        );
        assert_eq!(millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
