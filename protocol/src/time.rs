//! Protocol time: milliseconds since the Unix epoch, passed in by the driver.
//!
//! The protocol never reads a clock. Signed documents carry times as TUF does,
//! RFC 3339 strings in UTC with a `Z` suffix and whole seconds
//! (`2030-01-01T00:00:00Z`); this module converts between the two.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

/// A time string in a signed document was not of the form `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("time {0:?} is not of the form YYYY-MM-DDTHH:MM:SSZ after 1970")]
pub struct TimeFormatError(pub String);

const FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl Timestamp {
    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// This time plus `secs` seconds, saturating.
    pub const fn plus_secs(self, secs: u64) -> Self {
        self.plus_millis(secs.saturating_mul(1000))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses a TUF time string (`2030-01-01T00:00:00Z`). Only UTC with `Z` and
    /// whole seconds is accepted, so every implementation reads it the same way.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeFormatError> {
        let err = || TimeFormatError(s.chars().take(64).collect());
        if s.len() != 20 {
            return Err(err());
        }
        let dt = time::PrimitiveDateTime::parse(s, FORMAT).map_err(|_| err())?;
        let secs = dt.assume_utc().unix_timestamp();
        u64::try_from(secs).map(Self::from_secs).map_err(|_| err())
    }

    /// Formats as a TUF time string, dropping milliseconds.
    pub fn to_rfc3339(self) -> String {
        let secs = i64::try_from(self.as_secs()).unwrap_or(i64::MAX);
        match time::OffsetDateTime::from_unix_timestamp(secs) {
            Ok(dt) => dt
                .format(FORMAT)
                .unwrap_or_else(|_| "9999-12-31T23:59:59Z".into()),
            Err(_) => "9999-12-31T23:59:59Z".into(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Serde helper: a [`Timestamp`] written as a TUF time string.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    /// Deserializes from `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tuf_times() {
        let t = Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_893_456_000);
        assert_eq!(t.to_rfc3339(), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn refuses_offsets_fractions_and_garbage() {
        for bad in [
            "2030-01-01T00:00:00+01:00",
            "2030-01-01T00:00:00.5Z",
            "2030-01-01 00:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
            "2030-13-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
