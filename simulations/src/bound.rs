//! The peer-to-peer lower bound on distribution time that a run is measured
//! against.
//!
//! For a file of `F` bytes held by one seeder with upload rate `u_s`, and `N`
//! downloaders with upload rates `u_i` and download rates `d_i` (all in bytes
//! per second), no scheme can deliver the whole file to every downloader in
//! less than
//!
//! ```text
//! T = max( F / u_s,  F / d_min,  N·F / (u_s + Σ u_i) )
//! ```
//!
//! (Kumar & Ross, "Peer-assisted file distribution: the minimum distribution
//! time", 2006): the seeder must upload at least one copy, the slowest
//! downloader must receive one, and the swarm as a whole must upload `N`
//! copies. [`LowerBound`] accumulates the peers one at a time, so it needs
//! constant memory however large the swarm, and reports which of the three
//! terms binds. [`BoundSummary`] is the serializable form that goes into
//! `summary.json`.

use serde::{Deserialize, Serialize};

/// Which of the three terms of the bound is the largest.
///
/// When terms tie, the earlier variant in declaration order wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// `F / u_s`: the seeder has to upload the file at least once.
    #[default]
    SeederUpload,
    /// `F / d_min`: the slowest downloader has to receive the whole file.
    SlowestDownload,
    /// `N·F / (u_s + Σ u_i)`: all `N` copies have to be uploaded by someone.
    AggregateUpload,
}

/// The three terms of the bound, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Terms {
    /// `F / u_s`.
    pub seeder_upload: f64,
    /// `F / d_min` (0 without downloaders or when every download is unlimited).
    pub slowest_download: f64,
    /// `N·F / (u_s + Σ u_i)` (0 without downloaders).
    pub aggregate_upload: f64,
}

impl Terms {
    /// The largest term and which one it is (ties go to the earlier term in
    /// [`Binding`]'s order).
    pub fn max(&self) -> (f64, Binding) {
        let mut best = (self.seeder_upload, Binding::SeederUpload);
        for (v, b) in [
            (self.slowest_download, Binding::SlowestDownload),
            (self.aggregate_upload, Binding::AggregateUpload),
        ] {
            if v > best.0 {
                best = (v, b);
            }
        }
        best
    }
}

/// A streaming accumulator for the bound: create it for the file and the
/// seeder, then [`add_peer`](LowerBound::add_peer) each downloader. It keeps
/// only the peer count, the sum of uploads and the minimum download, so a
/// million peers cost nothing.
///
/// Rates are bytes per second. A negative or NaN rate counts as 0; an infinite
/// download rate means the downloader's link never limits it.
#[derive(Clone, Debug, PartialEq)]
pub struct LowerBound {
    file_bytes: u64,
    seeder_upload: f64,
    peers: u64,
    sum_upload: f64,
    min_download: f64,
}

/// `bytes / rate`, with `0 / anything = 0` and `x / 0 = ∞` for `x > 0`.
fn transfer_time(bytes: f64, rate: f64) -> f64 {
    if bytes <= 0.0 {
        0.0
    } else if rate <= 0.0 {
        f64::INFINITY
    } else {
        bytes / rate
    }
}

/// A rate with NaN and negative values replaced by 0.
fn clean_rate(rate: f64) -> f64 {
    rate.max(0.0)
}

impl LowerBound {
    /// A bound for a file of `file_bytes` bytes served by one seeder uploading
    /// at `seeder_upload` bytes per second, with no downloaders yet.
    pub fn new(file_bytes: u64, seeder_upload: f64) -> LowerBound {
        LowerBound {
            file_bytes,
            seeder_upload: clean_rate(seeder_upload),
            peers: 0,
            sum_upload: 0.0,
            min_download: f64::INFINITY,
        }
    }

    /// Adds one downloader with the given upload and download rates (bytes per
    /// second).
    pub fn add_peer(&mut self, upload: f64, download: f64) -> &mut LowerBound {
        self.peers += 1;
        self.sum_upload += clean_rate(upload);
        self.min_download = self.min_download.min(clean_rate(download));
        self
    }

    /// A bound built from an iterator of `(upload, download)` pairs.
    pub fn from_peers<I>(file_bytes: u64, seeder_upload: f64, peers: I) -> LowerBound
    where
        I: IntoIterator<Item = (f64, f64)>,
    {
        let mut bound = LowerBound::new(file_bytes, seeder_upload);
        for (up, down) in peers {
            bound.add_peer(up, down);
        }
        bound
    }

    /// The file size `F` in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// The seeder's upload rate `u_s`.
    pub fn seeder_upload(&self) -> f64 {
        self.seeder_upload
    }

    /// The number of downloaders `N` added so far.
    pub fn peers(&self) -> u64 {
        self.peers
    }

    /// `Σ u_i` over the downloaders added so far.
    pub fn sum_upload(&self) -> f64 {
        self.sum_upload
    }

    /// `d_min`, or `None` without downloaders or when every download rate is
    /// infinite.
    pub fn min_download(&self) -> Option<f64> {
        (self.peers > 0 && self.min_download.is_finite()).then_some(self.min_download)
    }

    /// The three terms, in seconds.
    pub fn terms(&self) -> Terms {
        let f = self.file_bytes as f64;
        if self.peers == 0 {
            return Terms {
                seeder_upload: transfer_time(f, self.seeder_upload),
                slowest_download: 0.0,
                aggregate_upload: 0.0,
            };
        }
        Terms {
            seeder_upload: transfer_time(f, self.seeder_upload),
            slowest_download: transfer_time(f, self.min_download),
            aggregate_upload: transfer_time(
                self.peers as f64 * f,
                self.seeder_upload + self.sum_upload,
            ),
        }
    }

    /// The minimum distribution time `T` in seconds (∞ when the seeder cannot
    /// upload at all and the file is not empty).
    pub fn seconds(&self) -> f64 {
        self.terms().max().0
    }

    /// The term that equals [`seconds`](LowerBound::seconds).
    pub fn binding(&self) -> Binding {
        self.terms().max().1
    }

    /// The serializable summary, with `ratio = download_max / seconds` when
    /// `download_max` (the time the last endpoint finished downloading) is
    /// known and the bound is positive and finite.
    pub fn summary(&self, download_max: Option<f64>) -> BoundSummary {
        let (seconds, binding) = self.terms().max();
        let ratio = match download_max {
            Some(max) if seconds > 0.0 && seconds.is_finite() => Some(max / seconds),
            _ => None,
        };
        BoundSummary {
            seconds,
            binding,
            file_bytes: self.file_bytes,
            seeder_upload_bps: self.seeder_upload,
            min_download_bps: self.min_download(),
            sum_upload_bps: self.sum_upload,
            peers: self.peers,
            ratio,
        }
    }
}

/// The lower bound as written into `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundSummary {
    /// The bound `T` in seconds; an infinite bound is written as `null`.
    #[serde(with = "infinite_as_null")]
    pub seconds: f64,
    /// Which term binds.
    pub binding: Binding,
    /// The file size `F` in bytes.
    pub file_bytes: u64,
    /// The seeder's upload rate `u_s` in bytes per second.
    #[serde(with = "infinite_as_null")]
    pub seeder_upload_bps: f64,
    /// The slowest downloader's download rate in bytes per second (`None`
    /// without downloaders or when no download is limited).
    pub min_download_bps: Option<f64>,
    /// The sum of the downloaders' upload rates in bytes per second.
    #[serde(with = "infinite_as_null")]
    pub sum_upload_bps: f64,
    /// The number of downloaders `N`.
    pub peers: u64,
    /// The time the last endpoint finished downloading divided by `seconds`;
    /// `None` when nobody finished or the bound is 0 or infinite.
    pub ratio: Option<f64>,
}

/// Writes a non-finite `f64` as `null` and reads `null` back as `+∞`.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: f64 = 1_000_000.0;

    #[test]
    fn seeder_and_one_slow_peer() {
        // F = 100 MB, u_s = 10 MB/s, one peer downloading at 5 MB/s:
        // F/u_s = 10 s, F/d_min = 20 s, N·F/(u_s+u_1) = 100/(10+1) ≈ 9.1 s.
        let mut b = LowerBound::new(100_000_000, 10.0 * MB);
        b.add_peer(1.0 * MB, 5.0 * MB);
        assert_eq!(b.seconds(), 20.0);
        assert_eq!(b.binding(), Binding::SlowestDownload);
        let t = b.terms();
        assert_eq!(t.seeder_upload, 10.0);
        assert!((t.aggregate_upload - 100.0 / 11.0).abs() < 1e-9);
    }

    #[test]
    fn homogeneous_swarm_is_aggregate_bound() {
        // F = 100 MB, u_s = 10 MB/s, 100 peers with 1 MB/s up, 10 MB/s down:
        // F/u_s = 10 s, F/d_min = 10 s, N·F/(u_s+Σu) = 100·100/(10+100) ≈ 90.9 s.
        let b = LowerBound::from_peers(100_000_000, 10.0 * MB, (0..100).map(|_| (MB, 10.0 * MB)));
        assert_eq!(b.peers(), 100);
        assert_eq!(b.binding(), Binding::AggregateUpload);
        assert!((b.seconds() - 10_000.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn seeder_bound_with_unlimited_downloads() {
        // Infinite download capacity: F/d_min = 0. F = 50 MB, u_s = 5 MB/s,
        // 2 peers with 100 MB/s up: F/u_s = 10 s, 2·50/(5+200) ≈ 0.49 s.
        let mut b = LowerBound::new(50_000_000, 5.0 * MB);
        b.add_peer(100.0 * MB, f64::INFINITY)
            .add_peer(100.0 * MB, f64::INFINITY);
        assert_eq!(b.terms().slowest_download, 0.0);
        assert_eq!(b.min_download(), None);
        assert_eq!(b.seconds(), 10.0);
        assert_eq!(b.binding(), Binding::SeederUpload);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(LowerBound::new(0, 0.0).seconds(), 0.0);
        assert_eq!(LowerBound::new(1, 0.0).seconds(), f64::INFINITY);
        let no_peers = LowerBound::new(100, 10.0);
        assert_eq!(no_peers.seconds(), 10.0);
        assert_eq!(no_peers.binding(), Binding::SeederUpload);
        let mut nan = LowerBound::new(100, 10.0);
        nan.add_peer(f64::NAN, f64::NAN);
        assert_eq!(nan.seconds(), f64::INFINITY);
        assert_eq!(nan.binding(), Binding::SlowestDownload);
    }

    #[test]
    fn summary_ratio_and_json() {
        let mut b = LowerBound::new(100_000_000, 10.0 * MB);
        b.add_peer(1.0 * MB, 5.0 * MB);
        let s = b.summary(Some(30.0));
        assert_eq!(s.ratio, Some(1.5));
        assert_eq!(s.min_download_bps, Some(5.0 * MB));
        assert_eq!(b.summary(None).ratio, None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"binding\":\"slowest_download\""), "{json}");
        let back: BoundSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        let inf = LowerBound::new(1, 0.0).summary(Some(3.0));
        assert_eq!(inf.ratio, None);
        let json = serde_json::to_string(&inf).unwrap();
        assert!(json.contains("\"seconds\":null"), "{json}");
        let back: BoundSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.seconds, f64::INFINITY);
    }

    proptest! {
        #[test]
        fn bound_is_the_largest_term(
            file in 0u64..10_000_000_000,
            seeder in 0.0f64..1e9,
            peers in proptest::collection::vec((0.0f64..1e9, 1.0f64..1e9), 0..50),
        ) {
            let b = LowerBound::from_peers(file, seeder, peers.iter().copied());
            let t = b.terms();
            let s = b.seconds();
            prop_assert!(s >= t.seeder_upload);
            prop_assert!(s >= t.slowest_download);
            prop_assert!(s >= t.aggregate_upload);
            prop_assert!(s == t.seeder_upload || s == t.slowest_download || s == t.aggregate_upload);
            let bound_term = match b.binding() {
                Binding::SeederUpload => t.seeder_upload,
                Binding::SlowestDownload => t.slowest_download,
                Binding::AggregateUpload => t.aggregate_upload,
            };
            prop_assert_eq!(s, bound_term);
        }
    }
}
