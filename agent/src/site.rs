//! The `[site]` settings: how many WAN fetchers a site elects, time-of-day
//! windows for WAN transfers and a monthly cap on bytes uploaded to WAN
//! peers, as operators know them from Windows Delivery Optimization.
//!
//! The engine never reads a clock: this module turns the settings, the local
//! time and this month's upload counter into the [`TransferPolicy`] the driver
//! hands the engine, and keeps the counter in `data_dir/wan-upload.json` so a
//! restart does not reset it. A peer is on the LAN when mDNS found it (the
//! driver's classification, as for traffic metrics).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;
use time::{OffsetDateTime, UtcOffset};
use waveguard_protocol::fetch::TransferPolicy;
use waveguard_protocol::limits::DEFAULT_WAN_FETCHERS;

/// Most WAN windows accepted: a day holds few sensible ones.
pub const MAX_WAN_WINDOWS: usize = 24;
/// Largest `site.wan_fetchers` accepted.
pub const MAX_WAN_FETCHERS: u32 = 64;
/// The counter file in the data directory.
pub const COUNTER_FILE: &str = "wan-upload.json";
/// Largest counter file read.
const MAX_COUNTER_BYTES: u64 = 4096;

/// `[site]` as written in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// WAN fetchers per site and release (0: every node fetches across the WAN).
    pub wan_fetchers: u32,
    /// Local-time windows, "HH:MM-HH:MM", in which WAN transfers may run (empty: always).
    pub wan_windows: Vec<String>,
    /// The offset of local time from UTC, "+HH:MM" or "-HH:MM", for the windows and the month.
    pub utc_offset: String,
    /// Most bytes uploaded to WAN peers per calendar month (0: no cap).
    pub monthly_wan_upload_cap_bytes: u64,
    /// LAN transfers ignore the windows (and do not count towards the cap).
    pub lan_exempt: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            wan_fetchers: DEFAULT_WAN_FETCHERS,
            wan_windows: Vec::new(),
            utc_offset: "+00:00".into(),
            monthly_wan_upload_cap_bytes: 0,
            lan_exempt: true,
        }
    }
}

/// A `[site]` value is malformed; the message names the key.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SiteConfigError {
    /// `site.wan_fetchers` is out of range.
    #[error("site.wan_fetchers is {0}; it must be between 0 and {MAX_WAN_FETCHERS}")]
    Fetchers(u32),
    /// A window is not "HH:MM-HH:MM" or is empty.
    #[error("site.wan_windows[{index}] is {value:?}; write \"HH:MM-HH:MM\" in local time, e.g. \"22:00-06:00\", start and end different")]
    Window {
        /// Its position in the list.
        index: usize,
        /// What was written.
        value: String,
    },
    /// Too many windows.
    #[error("site.wan_windows has {0} windows; at most {MAX_WAN_WINDOWS}")]
    TooManyWindows(usize),
    /// The offset is not "+HH:MM".
    #[error("site.utc_offset is {0:?}; write \"+HH:MM\" or \"-HH:MM\", e.g. \"+01:00\"")]
    Offset(String),
}

/// `[site]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitePolicy {
    /// WAN fetchers per site and release.
    pub wan_fetchers: u32,
    /// Windows as (start, end) minutes of the day; end before start wraps past midnight.
    pub windows: Vec<(u16, u16)>,
    /// Local time's offset from UTC.
    pub offset: UtcOffset,
    /// Monthly WAN upload cap in bytes (0: none).
    pub cap: u64,
    /// LAN transfers ignore the windows and the cap.
    pub lan_exempt: bool,
}

impl SiteConfig {
    /// Checks every value, naming the key of the first malformed one.
    pub fn check(&self) -> Result<SitePolicy, SiteConfigError> {
        if self.wan_fetchers > MAX_WAN_FETCHERS {
            return Err(SiteConfigError::Fetchers(self.wan_fetchers));
        }
        if self.wan_windows.len() > MAX_WAN_WINDOWS {
            return Err(SiteConfigError::TooManyWindows(self.wan_windows.len()));
        }
        let windows = self
            .wan_windows
            .iter()
            .enumerate()
            .map(|(index, w)| {
                parse_window(w).ok_or_else(|| SiteConfigError::Window {
                    index,
                    value: w.chars().take(64).collect(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let offset = parse_offset(&self.utc_offset)
            .ok_or_else(|| SiteConfigError::Offset(self.utc_offset.chars().take(32).collect()))?;
        Ok(SitePolicy {
            wan_fetchers: self.wan_fetchers,
            windows,
            offset,
            cap: self.monthly_wan_upload_cap_bytes,
            lan_exempt: self.lan_exempt,
        })
    }
}

/// "HH:MM" as minutes of the day.
fn parse_hm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// "HH:MM-HH:MM" as (start, end) minutes; start and end must differ.
fn parse_window(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (parse_hm(a)?, parse_hm(b)?);
    (a != b).then_some((a, b))
}

/// "+HH:MM" or "-HH:MM".
fn parse_offset(s: &str) -> Option<UtcOffset> {
    let (sign, rest) = match s.trim().as_bytes().first()? {
        b'+' => (1i8, &s.trim()[1..]),
        b'-' => (-1i8, &s.trim()[1..]),
        _ => return None,
    };
    let minutes = parse_hm(rest)?;
    let (h, m) = ((minutes / 60) as i8, (minutes % 60) as i8);
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

impl SitePolicy {
    /// Whether `minute` of the local day falls in a window (always, without windows).
    pub fn in_window(&self, minute: u16) -> bool {
        self.windows.is_empty()
            || self.windows.iter().any(|&(a, b)| {
                if a < b {
                    (a..b).contains(&minute)
                } else {
                    minute >= a || minute < b
                }
            })
    }

    /// Local time at the Unix time `unix_ms`.
    fn local(&self, unix_ms: u64) -> OffsetDateTime {
        let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
        OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset)
    }

    /// The calendar month at `unix_ms` in local time, "YYYY-MM".
    pub fn month(&self, unix_ms: u64) -> String {
        let t = self.local(unix_ms);
        format!("{:04}-{:02}", t.year(), u8::from(t.month()))
    }

    /// What the engine may do at `unix_ms` with `uploaded` bytes sent to WAN peers this month.
    pub fn transfer_policy(&self, unix_ms: u64, uploaded: u64) -> TransferPolicy {
        let t = self.local(unix_ms);
        let minute = u16::from(t.hour()) * 60 + u16::from(t.minute());
        let open = self.in_window(minute);
        let under_cap = self.cap == 0 || uploaded < self.cap;
        let lan = self.lan_exempt || open;
        TransferPolicy {
            wan_fetch: open,
            wan_serve: open && under_cap,
            lan_fetch: lan,
            lan_serve: lan && (self.lan_exempt || under_cap),
        }
    }
}

/// This month's bytes uploaded to WAN peers, as kept on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCounter {
    /// The month counted, "YYYY-MM" in local time.
    pub month: String,
    /// Bytes uploaded in it.
    pub bytes: u64,
}

/// The counter file could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CounterError {
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::fsio::ReadError,
    },
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::fsio::WriteError,
    },
}

impl UploadCounter {
    /// The counter kept in `data_dir`, starting afresh in `month` (also when
    /// the file is missing or unreadable: a damaged counter must not stop the agent).
    pub fn load(data_dir: &Path, month: &str) -> Result<UploadCounter, CounterError> {
        let path = data_dir.join(COUNTER_FILE);
        if !path.exists() {
            return Ok(UploadCounter::fresh(month));
        }
        let bytes = crate::fsio::read_bounded(&path, MAX_COUNTER_BYTES)
            .map_err(|source| CounterError::Read { path, source })?;
        let mut c: UploadCounter =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| UploadCounter::fresh(month));
        c.roll(month);
        Ok(c)
    }

    fn fresh(month: &str) -> UploadCounter {
        UploadCounter {
            month: month.into(),
            bytes: 0,
        }
    }

    /// Starts a new count when `month` is not the one counted; returns whether it did.
    pub fn roll(&mut self, month: &str) -> bool {
        if self.month == month {
            return false;
        }
        *self = UploadCounter::fresh(month);
        true
    }

    /// Writes the counter to `data_dir` atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), CounterError> {
        let path = data_dir.join(COUNTER_FILE);
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        crate::fsio::write_atomic(&path, &bytes)
            .map_err(|source| CounterError::Write { path, source })
    }
}

/// The driver's site state: the checked settings, this month's counter and
/// the policy last handed to the engine.
#[derive(Debug)]
pub struct SiteState {
    /// The settings.
    pub policy: SitePolicy,
    /// Where the counter is kept.
    data_dir: PathBuf,
    /// This month's WAN upload.
    pub counter: UploadCounter,
    /// The policy the engine has now (`None` before the first update).
    pub current: Option<TransferPolicy>,
    /// Bytes counted since the counter was last written.
    unsaved: u64,
}

/// Bytes uploaded to WAN peers between two writes of the counter: a crash
/// loses at most this much of the month's count.
const SAVE_EVERY_BYTES: u64 = 16 * 1024 * 1024;

impl SiteState {
    /// The state for `policy`, reading the counter kept in `data_dir`.
    pub fn load(policy: SitePolicy, data_dir: &Path, unix_ms: u64) -> Result<Self, CounterError> {
        let counter = UploadCounter::load(data_dir, &policy.month(unix_ms))?;
        Ok(SiteState {
            policy,
            data_dir: data_dir.to_path_buf(),
            counter,
            current: None,
            unsaved: 0,
        })
    }

    /// Adds `wan_sent` bytes at `unix_ms` (rolling the month over) and returns
    /// the engine's new policy when it changed.
    pub fn update(&mut self, unix_ms: u64, wan_sent: u64) -> Option<TransferPolicy> {
        let rolled = self.counter.roll(&self.policy.month(unix_ms));
        self.counter.bytes = self.counter.bytes.saturating_add(wan_sent);
        self.unsaved = self.unsaved.saturating_add(wan_sent);
        let reached_cap = self.policy.cap != 0 && self.counter.bytes >= self.policy.cap;
        if rolled || self.unsaved >= SAVE_EVERY_BYTES || (reached_cap && self.unsaved > 0) {
            self.save();
        }
        let next = self.policy.transfer_policy(unix_ms, self.counter.bytes);
        (self.current != Some(next)).then(|| {
            self.current = Some(next);
            next
        })
    }

    /// Writes the counter (at shutdown, at a month's end, every few MiB).
    pub fn save(&mut self) {
        match self.counter.save(&self.data_dir) {
            Ok(()) => self.unsaved = 0,
            Err(e) => tracing::warn!(%e, "WAN upload counter not saved"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(windows: &[&str], cap: u64, lan_exempt: bool) -> SitePolicy {
        SiteConfig {
            wan_windows: windows.iter().map(|s| s.to_string()).collect(),
            monthly_wan_upload_cap_bytes: cap,
            lan_exempt,
            ..SiteConfig::default()
        }
        .check()
        .unwrap()
    }

    /// 2026-12-02 at `h:m` UTC, in Unix milliseconds.
    fn at(h: u64, m: u64) -> u64 {
        (1_796_169_600 + h * 3600 + m * 60) * 1000
    }

    #[test]
    fn windows_wrap_past_midnight() {
        let s = site(&["22:00-06:00", "12:00-13:00"], 0, true);
        assert!(s.transfer_policy(at(23, 0), 0).wan_fetch);
        assert!(s.transfer_policy(at(5, 59), 0).wan_fetch);
        assert!(!s.transfer_policy(at(6, 0), 0).wan_fetch);
        assert!(s.transfer_policy(at(12, 30), 0).wan_serve);
        assert!(!s.transfer_policy(at(13, 0), 0).wan_serve);
        let closed = s.transfer_policy(at(9, 0), 0);
        assert!(closed.lan_fetch && closed.lan_serve, "the LAN is exempt");
        let strict = site(&["22:00-06:00"], 0, false).transfer_policy(at(9, 0), 0);
        assert!(!strict.lan_fetch && !strict.lan_serve);
    }

    #[test]
    fn the_cap_stops_wan_uploads_only() {
        let s = site(&[], 1000, true);
        let p = s.transfer_policy(at(9, 0), 999);
        assert!(p.wan_serve && p.wan_fetch);
        let p = s.transfer_policy(at(9, 0), 1000);
        assert!(!p.wan_serve && p.wan_fetch && p.lan_serve);
    }

    #[test]
    fn the_offset_moves_windows_and_months() {
        let mut c = SiteConfig {
            wan_windows: vec!["00:00-01:00".into()],
            utc_offset: "+02:00".into(),
            ..SiteConfig::default()
        };
        let s = c.check().unwrap();
        assert!(s.transfer_policy(at(22, 30), 0).wan_fetch);
        assert!(!s.transfer_policy(at(0, 30), 0).wan_fetch);
        c.utc_offset = "-01:00".into();
        let s = c.check().unwrap();
        // 2026-12-01 00:30 UTC is still November at -01:00.
        assert_eq!(s.month(at(0, 30) - 86_400_000), "2026-11");
        assert_eq!(s.month(at(9, 0)), "2026-12");
    }

    #[test]
    fn malformed_values_are_named() {
        for (config, key) in [
            (
                SiteConfig {
                    wan_windows: vec!["22:00-06:00".into(), "25:00-01:00".into()],
                    ..SiteConfig::default()
                },
                "site.wan_windows[1]",
            ),
            (
                SiteConfig {
                    wan_windows: vec!["10:00-10:00".into()],
                    ..SiteConfig::default()
                },
                "site.wan_windows[0]",
            ),
            (
                SiteConfig {
                    utc_offset: "CET".into(),
                    ..SiteConfig::default()
                },
                "site.utc_offset",
            ),
            (
                SiteConfig {
                    wan_fetchers: 1000,
                    ..SiteConfig::default()
                },
                "site.wan_fetchers",
            ),
        ] {
            let e = config.check().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn the_state_reports_policy_changes_once_and_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SiteState::load(site(&[], 100, true), dir.path(), at(9, 0)).unwrap();
        let first = s
            .update(at(9, 0), 0)
            .expect("the first policy is always handed over");
        assert!(first.wan_serve);
        assert_eq!(s.update(at(9, 1), 50), None);
        let capped = s.update(at(9, 2), 60).expect("the cap changes the policy");
        assert!(!capped.wan_serve);
        // The count was written when the cap was reached: a restart keeps it.
        let again = SiteState::load(site(&[], 100, true), dir.path(), at(9, 3)).unwrap();
        assert_eq!(again.counter.bytes, 110);
    }

    #[test]
    fn the_counter_survives_a_restart_and_rolls_over_with_the_month() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = UploadCounter::load(dir.path(), "2026-12").unwrap();
        c.bytes += 12345;
        c.save(dir.path()).unwrap();
        let again = UploadCounter::load(dir.path(), "2026-12").unwrap();
        assert_eq!(again.bytes, 12345);
        let next = UploadCounter::load(dir.path(), "2027-01").unwrap();
        assert_eq!((next.month.as_str(), next.bytes), ("2027-01", 0));
    }
}
