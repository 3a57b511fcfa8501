//! Wave selection: the spec's fixed test vectors, exact boundaries, pins, and
//! the statistics of random fleets (shares converge, releases pick independently).

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use waveguard_protocol::release::{HealthPolicy, RolloutPolicy, WaveSpec, PPM};
use waveguard_protocol::time::Timestamp;
use waveguard_protocol::wave::{bucket, reports_health, wave_for_bucket, wave_of, WavePin};
use waveguard_protocol::{NodeId, ReleaseId};

/// 2^64 as u128: buckets are fractions of this.
const TWO_64: u128 = 1 << 64;
/// Fleet size for the statistical tests.
const FLEET: usize = 20_000;

// ---------------------------------------------------------------------------
// Builders

/// A validated policy with the given cumulative shares (ppm), one hour of bake each.
fn policy(cumulative_ppm: &[u32]) -> RolloutPolicy {
    let p = RolloutPolicy {
        start: Timestamp::from_secs(1_893_456_000),
        waves: cumulative_ppm
            .iter()
            .enumerate()
            .map(|(i, &cumulative_ppm)| WaveSpec {
                name: format!("wave-{i}"),
                cumulative_ppm,
                bake_seconds: 3600,
            })
            .collect(),
        health: HealthPolicy {
            max_failure_ppm: 50_000,
            min_reports: 5,
            silence_seconds: 900,
            heartbeat_seconds: 60,
            report_ppm: 1_000_000,
        },
    };
    p.validate().expect("test policy is valid");
    p
}

/// 1 to 8 waves with strictly increasing cumulative shares ending at 100%.
fn arb_policy() -> impl Strategy<Value = RolloutPolicy> {
    prop::collection::btree_set(1..PPM, 0..8).prop_map(|cuts| {
        let mut shares: Vec<u32> = cuts.into_iter().collect();
        shares.push(PPM);
        policy(&shares)
    })
}

fn fleet(seed: u64, n: usize) -> Vec<NodeId> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            NodeId(id)
        })
        .collect()
}

fn release(seed: u64) -> ReleaseId {
    ReleaseId::derive("acme-sensor", &format!("1.0.{seed}"), &[0x22; 32])
}

/// The smallest bucket `b` with `b * PPM >= cumulative_ppm * 2^64`: the first bucket
/// that no longer belongs to a wave ending at `cumulative_ppm`.
fn first_bucket_past(cumulative_ppm: u32) -> u128 {
    (u128::from(cumulative_ppm) * TWO_64).div_ceil(u128::from(PPM))
}

/// Statistical tests run on a fixed seed: a fleet's spread is random, a failure
/// must be reproducible, and the tolerances are several standard deviations wide.
fn statistical(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5741_5645),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The spec's test vectors

mod vectors {
    use super::*;

    fn acme() -> ReleaseId {
        ReleaseId::derive("acme-sensor", "7.11.0", &[0x11; 32])
    }

    #[test]
    fn release_id() {
        assert_eq!(
            acme().to_hex(),
            "fbaa9245570eccd504a1ef26c7fa9303cad79c2fb81b66429348d05f6b46cdc0"
        );
    }

    #[test]
    fn buckets() {
        let r = acme();
        let cases: [([u8; 32], u64); 3] = [
            ([0x00; 32], 0x5b1d_6e1d_138f_7f2c), // 6565524902937329452, 0.35592
            ([0x01; 32], 0x4cd8_1831_dc3a_51b9), // 5537202344279298489, 0.30017
            ([0xff; 32], 0xfbba_f887_f397_bbbf), // 18139083711979174847, 0.98332
        ];
        for (node, expected) in cases {
            let got = bucket(&r, &NodeId(node));
            println!("node {:02x}..: bucket {got} ({got:#018x})", node[0]);
            assert_eq!(got, expected, "node {:02x}..", node[0]);
        }
    }

    #[test]
    fn waves_under_a_typical_policy() {
        // canary 1%, early 10%, half 50%, everyone.
        let p = policy(&[10_000, 100_000, 500_000, PPM]);
        let r = acme();
        let waves: Vec<usize> = [[0x00; 32], [0x01; 32], [0xff; 32]]
            .iter()
            .map(|n| wave_of(&p, &r, &NodeId(*n), WavePin::None))
            .collect();
        assert_eq!(waves, vec![2, 2, 3]);
    }
}

// ---------------------------------------------------------------------------
// Exact boundaries

mod boundaries {
    use super::*;

    #[test]
    fn exact_boundary_goes_to_the_next_wave() {
        // 25% = 250_000 ppm: bucket 2^62 is exactly 25%, so it is past wave 0.
        let p = policy(&[250_000, 750_000, PPM]);
        assert_eq!(u128::from(1u64 << 62) * u128::from(PPM), 250_000 * TWO_64);
        assert_eq!(wave_for_bucket(&p, 1 << 62), 1);
        assert_eq!(wave_for_bucket(&p, (1 << 62) - 1), 0);
        // 75%: 3 * 2^62.
        assert_eq!(wave_for_bucket(&p, 3 << 62), 2);
        assert_eq!(wave_for_bucket(&p, (3 << 62) - 1), 1);
    }

    #[test]
    fn ends_of_the_bucket_range() {
        let p = policy(&[1, PPM - 1, PPM]);
        assert_eq!(wave_for_bucket(&p, 0), 0);
        assert_eq!(wave_for_bucket(&p, u64::MAX), 2);
        assert_eq!(wave_for_bucket(&policy(&[PPM]), u64::MAX), 0);
    }

    #[test]
    fn an_unvalidated_policy_short_of_100_percent_falls_back_to_the_last_wave() {
        let mut p = policy(&[100_000, PPM]);
        p.waves[1].cumulative_ppm = 500_000;
        assert_eq!(wave_for_bucket(&p, u64::MAX), 1);
        p.waves.clear();
        assert_eq!(wave_for_bucket(&p, u64::MAX), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// For every wave but the last, the first bucket past its share goes to the
        /// next wave and the one before it stays, whether or not the boundary is exact.
        #[test]
        fn boundaries_are_exact(p in arb_policy()) {
            for (i, w) in p.waves.iter().enumerate().take(p.waves.len() - 1) {
                let past = first_bucket_past(w.cumulative_ppm);
                prop_assert!(past > 0 && past <= u128::from(u64::MAX));
                let past = past as u64;
                prop_assert_eq!(wave_for_bucket(&p, past), i + 1, "wave {} ends before {}", i, past);
                prop_assert_eq!(wave_for_bucket(&p, past - 1), i, "wave {} holds {}", i, past - 1);
            }
        }

        /// Shares that are a multiple of 15_625 ppm (1e6 / 2^6) have a boundary
        /// bucket with `bucket * 1e6 == cum * 2^64` exactly; it belongs to the next wave.
        #[test]
        fn exact_boundaries_belong_to_the_next_wave(k in 1u32..64) {
            let cum = k * 15_625;
            let p = policy(&[cum, PPM]);
            let b = u64::try_from(u128::from(cum) * TWO_64 / u128::from(PPM)).unwrap();
            prop_assert_eq!(u128::from(b) * u128::from(PPM), u128::from(cum) * TWO_64);
            prop_assert_eq!(wave_for_bucket(&p, b), 1);
            prop_assert_eq!(wave_for_bucket(&p, b - 1), 0);
        }

        /// A later bucket is never in an earlier wave.
        #[test]
        fn waves_are_monotonic_in_the_bucket(p in arb_policy(), a in any::<u64>(), b in any::<u64>()) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(wave_for_bucket(&p, lo) <= wave_for_bucket(&p, hi));
        }

        /// The wave is the unique one whose bucket range holds the bucket.
        #[test]
        fn the_wave_holds_the_bucket(p in arb_policy(), b in any::<u64>()) {
            let i = wave_for_bucket(&p, b);
            let x = u128::from(b) * u128::from(PPM);
            prop_assert!(x < u128::from(p.waves[i].cumulative_ppm) * TWO_64);
            if i > 0 {
                prop_assert!(x >= u128::from(p.waves[i - 1].cumulative_ppm) * TWO_64);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pins

mod pins {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn pins_override_the_bucket(p in arb_policy(), r in any::<[u8; 32]>(), n in any::<[u8; 32]>()) {
            let (r, n) = (ReleaseId(r), NodeId(n));
            prop_assert_eq!(wave_of(&p, &r, &n, WavePin::Canary), 0);
            prop_assert_eq!(wave_of(&p, &r, &n, WavePin::Last), p.waves.len() - 1);
            prop_assert_eq!(wave_of(&p, &r, &n, WavePin::None), wave_for_bucket(&p, bucket(&r, &n)));
        }
    }

    #[test]
    fn a_single_wave_policy_puts_everyone_in_it() {
        let p = policy(&[PPM]);
        let r = release(1);
        for n in fleet(1, 100) {
            for pin in [WavePin::None, WavePin::Canary, WavePin::Last] {
                assert_eq!(wave_of(&p, &r, &n, pin), 0);
            }
        }
    }

    #[test]
    fn pins_are_written_in_kebab_case() {
        let names: Vec<String> = [WavePin::None, WavePin::Canary, WavePin::Last]
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        assert_eq!(names, ["\"none\"", "\"canary\"", "\"last\""]);
    }
}

// ---------------------------------------------------------------------------
// Fleet statistics

mod statistics {
    use super::*;

    /// Allowed gap between a measured and an expected fraction: 1.5 percentage
    /// points, at least 4.2 standard deviations for 20,000 nodes.
    const TOLERANCE: f64 = 0.015;

    proptest! {
        #![proptest_config(statistical(12))]

        #[test]
        fn each_wave_gets_its_share(p in arb_policy(), fleet_seed in any::<u64>(), release_seed in any::<u64>()) {
            let r = release(release_seed);
            let mut counts = vec![0usize; p.waves.len()];
            for n in fleet(fleet_seed, FLEET) {
                counts[wave_of(&p, &r, &n, WavePin::None)] += 1;
            }
            let mut prev = 0u32;
            for (i, w) in p.waves.iter().enumerate() {
                let share = f64::from(w.cumulative_ppm - prev) / f64::from(PPM);
                let got = counts[i] as f64 / FLEET as f64;
                prop_assert!((got - share).abs() <= TOLERANCE, "wave {}: {} of nodes, share {}", i, got, share);
                prev = w.cumulative_ppm;
            }
        }

        /// Canaries of one release are not the canaries of the next: the overlap of two
        /// releases' first waves is about share^2 of the fleet, not share.
        #[test]
        fn releases_pick_canaries_independently(share in 20_000u32..=500_000, fleet_seed in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            prop_assume!(a != b);
            let p = policy(&[share, PPM]);
            let (ra, rb) = (release(a), release(b));
            let mut in_a = 0usize;
            let mut in_both = 0usize;
            for n in fleet(fleet_seed, FLEET) {
                let first_a = wave_of(&p, &ra, &n, WavePin::None) == 0;
                let first_b = wave_of(&p, &rb, &n, WavePin::None) == 0;
                in_a += usize::from(first_a);
                in_both += usize::from(first_a && first_b);
            }
            let s = f64::from(share) / f64::from(PPM);
            let both = in_both as f64 / FLEET as f64;
            let sd = (s * s * (1.0 - s * s) / FLEET as f64).sqrt();
            prop_assert!((both - s * s).abs() <= 5.0 * sd + 0.001, "overlap {} for share {}", both, s);
            // Far from the fully correlated case, where the overlap would be the share itself.
            prop_assert!(both < 0.75 * (in_a as f64 / FLEET as f64), "overlap {} of share {}", both, s);
        }

        /// The report sample takes its share of every wave alike (it is independent of
        /// the wave split), and a node sampled at one share is sampled at any larger one.
        #[test]
        fn the_report_sample_is_its_share_of_each_wave(p in arb_policy(), report in 50_000u32..=PPM, fleet_seed in any::<u64>(), release_seed in any::<u64>()) {
            let r = release(release_seed);
            let mut p = p;
            let mut wider = p.clone();
            p.health.report_ppm = report;
            wider.health.report_ppm = report.saturating_add(100_000).min(PPM);
            let mut members = vec![0usize; p.waves.len()];
            let mut sampled = vec![0usize; p.waves.len()];
            for n in fleet(fleet_seed, FLEET) {
                let w = wave_of(&p, &r, &n, WavePin::None);
                let inside = reports_health(&p, &r, &n, WavePin::None);
                members[w] += 1;
                sampled[w] += usize::from(inside);
                prop_assert!(!inside || reports_health(&wider, &r, &n, WavePin::None));
                prop_assert!(reports_health(&p, &r, &n, WavePin::Canary));
            }
            let s = f64::from(report) / f64::from(PPM);
            for (w, (&m, &k)) in members.iter().zip(&sampled).enumerate() {
                if m >= 200 {
                    let sd = (s * (1.0 - s) / m as f64).sqrt();
                    let got = k as f64 / m as f64;
                    prop_assert!((got - s).abs() <= 5.0 * sd + 0.001, "wave {}: {} of {} sampled, share {}", w, k, m, s);
                }
            }
        }
    }
}
