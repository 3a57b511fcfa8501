//! Parsers for the human-friendly values the CLI accepts: durations (`10m`,
//! `365d`), percentages (`0.5%`, turned into parts per million), sizes
//! (`64KiB`), times (`now` or `2030-01-01T00:00:00Z`) and wave lists
//! (`canary:1%:1h,all:100%:0s`).
//!
//! Percentages are parsed as exact decimals, never through floating point, so
//! `0.1%` is exactly 1000 ppm.

use waveguard_protocol::limits::MAX_WAVES;
use waveguard_protocol::release::{WaveSpec, PPM};
use waveguard_protocol::Timestamp;

/// Parses a duration: a whole number followed by `s`, `m`, `h`, `d` or `w`. Returns seconds.
pub fn duration_secs(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "duration {s:?} must be a whole number followed by s, m, h, d or w (e.g. 10m, 365d)"
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// Parses a percentage like `5%`, `0.5%` or `100%` into parts per million.
pub fn percent_ppm(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let bad =
        || format!("percentage {s:?} must look like 5% or 0.25% (at most 4 decimals, 0% to 100%)");
    let body = t.strip_suffix('%').ok_or_else(bad)?;
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty()
        || frac.len() > 4
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if body.ends_with('.') {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    // 1% = 10_000 ppm, so four decimals are exact.
    let mut frac_ppm = 0u64;
    for (i, d) in frac.bytes().enumerate() {
        frac_ppm += u64::from(d - b'0') * 10u64.pow(3 - i as u32);
    }
    let ppm = whole
        .checked_mul(10_000)
        .and_then(|w| w.checked_add(frac_ppm))
        .filter(|&p| p <= u64::from(PPM))
        .ok_or_else(bad)?;
    u32::try_from(ppm).map_err(|_| bad())
}

/// Parses a size: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB`.
pub fn size_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("size {s:?} must be a whole number of bytes, optionally with B, KiB, MiB or GiB")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per = match unit {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// When something starts: now, or a TUF time string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTime {
    /// The moment the command runs.
    Now,
    /// A fixed time.
    At(Timestamp),
}

impl StartTime {
    /// The time, given the current one.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            StartTime::Now => now,
            StartTime::At(t) => t,
        }
    }
}

/// Parses `now` or `YYYY-MM-DDTHH:MM:SSZ`.
pub fn start_time(s: &str) -> Result<StartTime, String> {
    if s.trim() == "now" {
        return Ok(StartTime::Now);
    }
    time(s).map(StartTime::At)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ`.
pub fn time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s.trim()).map_err(|e| e.to_string())
}

/// The default wave list of `publish`.
pub const DEFAULT_WAVES: &str = "canary:1%:1h,early:10%:6h,broad:50%:12h,all:100%:0s";

/// A parsed wave list (a newtype, so clap sees one value rather than many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveList(pub Vec<WaveSpec>);

/// Parses a wave list `name:cumulative%:bake,...`. Only the syntax is checked
/// here; the protocol's policy validation checks shares and names when the
/// release is built, so there is one rule set.
pub fn waves(s: &str) -> Result<WaveList, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() > MAX_WAVES {
        return Err(format!(
            "wave list has {} waves, at most {MAX_WAVES} are allowed",
            parts.len()
        ));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let fields: Vec<&str> = part.split(':').collect();
            let [name, share, bake] = fields[..] else {
                return Err(format!(
                    "wave {i} ({part:?}) must be name:cumulative-percentage:bake-time, e.g. canary:1%:1h"
                ));
            };
            Ok(WaveSpec {
                name: name.to_owned(),
                cumulative_ppm: percent_ppm(share).map_err(|e| format!("wave {i} ({name}): {e}"))?,
                bake_seconds: duration_secs(bake).map_err(|e| format!("wave {i} ({name}): {e}"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(WaveList)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("0s"), Ok(0));
        assert_eq!(duration_secs("10m"), Ok(600));
        assert_eq!(duration_secs("1h"), Ok(3600));
        assert_eq!(duration_secs("365d"), Ok(365 * 86_400));
        assert_eq!(duration_secs("2w"), Ok(14 * 86_400));
        for bad in [
            "",
            "10",
            "m",
            "1.5h",
            "-1s",
            "10 y",
            "99999999999999999999d",
        ] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_are_exact() {
        assert_eq!(percent_ppm("1%"), Ok(10_000));
        assert_eq!(percent_ppm("0.5%"), Ok(5_000));
        assert_eq!(percent_ppm("0.1%"), Ok(1_000));
        assert_eq!(percent_ppm("0.0001%"), Ok(1));
        assert_eq!(percent_ppm("100%"), Ok(PPM));
        assert_eq!(percent_ppm("0%"), Ok(0));
        for bad in [
            "1",
            "100.0001%",
            "101%",
            ".5%",
            "5.%",
            "0.00001%",
            "-1%",
            "1e2%",
            "%",
        ] {
            assert!(percent_ppm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("64KiB"), Ok(65_536));
        assert_eq!(size_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(size_bytes("4096"), Ok(4096));
        assert!(size_bytes("1.5MiB").is_err());
        assert!(size_bytes("1MB").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(start_time("now"), Ok(StartTime::Now));
        assert_eq!(
            start_time("2030-01-01T00:00:00Z"),
            Ok(StartTime::At(Timestamp::from_secs(1_893_456_000)))
        );
        assert!(start_time("tomorrow").is_err());
    }

    #[test]
    fn default_waves_parse() {
        let w = waves(DEFAULT_WAVES).unwrap().0;
        let shares: Vec<u32> = w.iter().map(|w| w.cumulative_ppm).collect();
        assert_eq!(shares, [10_000, 100_000, 500_000, PPM]);
        assert_eq!(w[1].name, "early");
        assert_eq!(w[2].bake_seconds, 12 * 3600);
        assert!(waves("canary:1%").is_err());
        assert!(waves("a:1%:1h:x").is_err());
        assert!(waves("a:1:1h").is_err());
    }
}
