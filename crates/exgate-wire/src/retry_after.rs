//! How long a server asks the client to wait: `Retry-After` (seconds or an HTTP-date) and EWS's
//! `BackOffMilliseconds`.

use std::time::{Duration, SystemTime};

/// Reads a `Retry-After` value: delay-seconds, or an HTTP-date counted from `now` (a date in the
/// past is no wait). `None` when the value is neither.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads EWS's `BackOffMilliseconds` (a `MessageXml` value of `ErrorServerBusy`).
pub fn back_off_milliseconds(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_dates_and_back_off() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse(" 30 ", now), Some(Duration::from_secs(30)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse(&later, now), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse("soon", now), None);
        assert_eq!(
            back_off_milliseconds("250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(back_off_milliseconds("-1"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,60}") {
            let _ = parse(&s, SystemTime::UNIX_EPOCH);
            let _ = back_off_milliseconds(&s);
        }
    }
}
