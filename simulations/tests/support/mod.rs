//! Shared setup for the in-memory mesh tests: a fixed clock, a three-wave
//! policy and a mesh with one published release.
#![allow(dead_code)]

use waveguard_protocol::release::{HealthPolicy, RolloutPolicy, WaveSpec};
use waveguard_protocol::rollout::RolloutState;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::{NodeId, Timestamp};
use waveguard_sim::mesh::{InstallRecord, Mesh, MeshConfig};
use waveguard_sim::sample::{SampleRelease, SampleVendor};

pub const T0: Timestamp = Timestamp::from_secs(1_900_000_000);

/// Three waves (25%, 60%, 100%) starting a minute after publishing.
pub fn policy() -> RolloutPolicy {
    RolloutPolicy {
        start: T0.plus_secs(60),
        waves: vec![
            WaveSpec {
                name: "canary".into(),
                cumulative_ppm: 250_000,
                bake_seconds: 120,
            },
            WaveSpec {
                name: "early".into(),
                cumulative_ppm: 600_000,
                bake_seconds: 120,
            },
            WaveSpec {
                name: "all".into(),
                cumulative_ppm: 1_000_000,
                bake_seconds: 60,
            },
        ],
        health: HealthPolicy {
            max_failure_ppm: 300_000,
            min_reports: 1,
            silence_seconds: 30,
            heartbeat_seconds: 10,
            report_ppm: 1_000_000,
        },
    }
}

pub struct Setup {
    pub mesh: Mesh,
    pub vendor: SampleVendor,
    pub release: SampleRelease,
}

/// A mesh of `endpoints` nodes plus a seeder holding one 2 MiB release.
pub fn setup(seed: u64, endpoints: usize, degree: Option<usize>) -> Setup {
    setup_with(seed, endpoints, degree, policy())
}

/// Like [`setup`] with another rollout policy.
pub fn setup_with(
    seed: u64,
    endpoints: usize,
    degree: Option<usize>,
    rollout: RolloutPolicy,
) -> Setup {
    setup_sharing(seed, endpoints, degree, rollout, true)
}

/// Like [`setup_with`], saying whether engines share report signature checks.
pub fn setup_sharing(
    seed: u64,
    endpoints: usize,
    degree: Option<usize>,
    rollout: RolloutPolicy,
    share_signature_checks: bool,
) -> Setup {
    let mut vendor = SampleVendor::new(seed, T0, false).expect("vendor");
    let config = MeshConfig {
        seed,
        endpoints,
        degree,
        share_signature_checks,
        ..MeshConfig::default()
    };
    let mut mesh = Mesh::new(config, vendor.root_json(), T0).expect("mesh");
    let release = vendor
        .release("acme-sensor", "7.11.0", 2 << 20, rollout, T0)
        .expect("release");
    mesh.publish(
        release.bundle.clone(),
        release.id,
        release.chunk_list.clone(),
        release.chunks.clone(),
    );
    Setup {
        mesh,
        vendor,
        release,
    }
}

pub fn waves_of(s: &Setup) -> Vec<usize> {
    (1..s.mesh.len())
        .map(|i| {
            wave_of(
                &policy(),
                &s.release.id,
                &s.mesh.node(i).id(),
                WavePin::None,
            )
        })
        .collect()
}

/// A bad release stopped at its first wave: some nodes installed, all of them in
/// wave 0, each rolled back, and every node learned of the halt. The installs.
pub fn check_halted_at_first_wave(s: &Setup) -> Vec<InstallRecord> {
    let installs = s.mesh.installs().to_vec();
    assert!(!installs.is_empty(), "the canary wave installs");
    assert!(
        installs.iter().all(|r| r.wave == 0),
        "installs outside the first wave: {installs:?}"
    );
    for rec in &installs {
        let state = s.mesh.node(rec.node).release_state(&s.release.id).cloned();
        assert!(
            matches!(state, Some(RolloutState::RolledBack { .. })),
            "canary node {} is {state:?}",
            rec.node
        );
    }
    for i in 0..s.mesh.len() {
        assert!(
            s.mesh.knows_halt(i, &s.release.id),
            "node {i} never learned of the halt"
        );
    }
    installs
}

pub fn run(s: &mut Setup, until: Timestamp) {
    if let Err(e) = s.mesh.run_until(until) {
        panic!("{e}");
    }
}

/// Like [`setup`], in a fleet with an operator key: `certify` says which endpoints get a certificate.
pub fn setup_fleet(seed: u64, endpoints: usize, certify: impl Fn(NodeId) -> bool) -> Setup {
    let mut vendor = SampleVendor::new(seed, T0, true).expect("vendor");
    let config = MeshConfig {
        seed,
        endpoints,
        ..MeshConfig::default()
    };
    let operator = vendor.operator_key().clone();
    let issue = |node: NodeId| {
        certify(node).then(|| {
            waveguard_protocol::health::cert::issue_cert(
                &[&operator],
                node,
                T0.plus_secs(30 * 24 * 3600),
                WavePin::None,
            )
        })
    };
    let mut mesh = Mesh::with_certs(config, vendor.root_json(), T0, &issue).expect("mesh");
    let release = vendor
        .release("acme-sensor", "7.11.0", 2 << 20, policy(), T0)
        .expect("release");
    mesh.publish(
        release.bundle.clone(),
        release.id,
        release.chunk_list.clone(),
        release.chunks.clone(),
    );
    Setup {
        mesh,
        vendor,
        release,
    }
}
