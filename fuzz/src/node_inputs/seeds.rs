//! Seed scripts for `node_inputs`: whole flows a fuzzer would take long to
//! find (an honest rollout that installs and then halts, every canned message,
//! lying peers), and tests that they get where they are meant to.

use super::canned;
use super::steps::{Script, Setup, Step};
use crate::fixtures::PEERS;
use crate::script::{time_code, Payload};

fn honest(open: u8) -> Step {
    Step::Respond {
        open,
        data: Payload::Honest,
    }
}

/// A whole honest rollout on one node: connect, fetch, store, stage, install,
/// probe and serve a chunk; then the peers report failures and the node
/// halts and rolls back.
fn honest_rollout(operator: bool) -> Script {
    let mut steps = vec![Step::Connect(0)];
    // Availability, chunk list, availability again, then every chunk, each
    // answered as soon as it is asked (the newest open request).
    steps.extend((0..8).map(|_| honest(0)));
    steps.extend((0..8).map(|_| Step::Stored(0)));
    steps.extend([
        honest(0), // the metadata request: learns release B
        Step::Staged {
            release: 0,
            ok: true,
        },
        Step::Advance(time_code(3, 2)),
        Step::Installed {
            release: 0,
            ok: true,
        },
        Step::Advance(time_code(2, 1)),
        Step::Probed {
            release: 0,
            healthy: true,
        },
        Step::Connect(1),
        Step::Request {
            from: 1,
            data: Payload::Honest,
        },
        Step::Loaded {
            which: 0,
            data: Some(Payload::Honest),
        },
    ]);
    steps.extend((0..PEERS as u8).map(|i| Step::Gossip {
        from: i,
        data: Payload::Canned(canned::gossip_unhealthy(usize::from(i))),
    }));
    steps.extend([
        // The next gate check is due a heartbeat after the last one.
        Step::Advance(time_code(3, 1)),
        Step::RolledBack {
            release: 0,
            ok: true,
        },
    ]);
    Script {
        setup: Setup {
            operator,
            with_release: true,
            pin: 1,
            prefetch: true,
            ..Setup::default()
        },
        steps,
    }
}

/// Every canned message as gossip, request and local input, with time passing.
fn canned_tour(setup: Setup) -> Script {
    let mut steps = vec![Step::Connect(1), Step::Connect(2)];
    for i in 0..canned::LEN as u8 {
        steps.push(Step::Gossip {
            from: i,
            data: Payload::Canned(i),
        });
        steps.push(Step::Request {
            from: i,
            data: Payload::Canned(i),
        });
        steps.push(Step::Advance(time_code(2, 10)));
    }
    steps.extend([
        Step::Directive(Payload::Canned(canned::DIRECTIVE_HALT)),
        Step::Directive(Payload::Canned(canned::DIRECTIVE_RESUME)),
        Step::Metadata(1),
        Step::ChunkList {
            release: 0,
            data: Payload::Honest,
        },
        Step::Held(0x7f),
        Step::Advance(time_code(5, 2)),
        Step::Disconnect(1),
    ]);
    Script { setup, steps }
}

/// Lying peers: a damaged chunk list from one, a damaged chunk from another,
/// answers to requests never made, a failed request, then time running out.
fn hostile_peers() -> Script {
    let steps = vec![
        Step::Connect(3),
        honest(0), // availability: the peer is a source
        Step::Respond {
            open: 0,
            data: Payload::Flipped {
                index: canned::RESPONSE_CHUNK_LIST,
                at: 30,
                xor: 4,
            },
        },
        Step::Connect(0),
        honest(0),
        honest(0), // the chunk list
        honest(0), // availability again, now checked against the list
        Step::Respond {
            open: 0,
            data: Payload::Flipped {
                index: canned::RESPONSE_CHUNK_0,
                at: 1000,
                xor: 1,
            },
        },
        Step::RespondStray {
            from: 2,
            request_id: 9,
            data: Payload::Raw(vec![1, 4]),
        },
        Step::Fail { open: 0 },
        Step::Advance(time_code(2, 31)),
        Step::Advance(time_code(3, 1)),
    ];
    Script {
        setup: Setup {
            with_release: true,
            prefetch: true,
            ..Setup::default()
        },
        steps,
    }
}

/// Seed inputs: `(name, bytes)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("honest_rollout_open", honest_rollout(false).encode()),
        ("honest_rollout_operator", honest_rollout(true).encode()),
        (
            "canned_tour_endpoint",
            canned_tour(Setup {
                with_release: true,
                pin: 1,
                ..Setup::default()
            })
            .encode(),
        ),
        (
            "canned_tour_seeder_root_only",
            canned_tour(Setup {
                operator: true,
                seeder: true,
                ..Setup::default()
            })
            .encode(),
        ),
        ("hostile_peers", hostile_peers().encode()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn an_honest_rollout_installs_then_halts_and_rolls_back() {
        for operator in [false, true] {
            let s = run(&honest_rollout(operator).encode());
            assert_eq!(s.count("assemble"), 1, "{s:?}");
            assert_eq!(s.count("install"), 1, "{s:?}");
            assert!(s.count("run_probe") >= 1, "{s:?}");
            assert!(s.count("load_chunk") >= 1, "{s:?}");
            assert_eq!(s.count("rollback"), 1, "{s:?}");
            assert_eq!(s.events.get("halted"), Some(&1), "{s:?}");
        }
    }

    #[test]
    fn hostile_peers_get_banned() {
        let s = run(&hostile_peers().encode());
        assert_eq!(s.count("ban"), 2, "{s:?}");
    }

    #[test]
    fn the_canned_tour_is_mostly_accepted() {
        let s = run(&seeds()[2].1);
        assert!(s.count("verdict") >= canned::LEN, "{s:?}");
        assert!(s.count("respond") >= canned::LEN, "{s:?}");
    }
}
