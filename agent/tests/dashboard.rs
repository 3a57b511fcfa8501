//! The live dashboard (`GET /` of the agent's HTTP API) as a person sees it.
//!
//! The browser test runs a small mesh of real agents on 127.0.0.1 (the
//! agent's `testbed`: a seeder, three canaries and one last-wave agent) and
//! opens the last-wave agent's dashboard in headless Chromium through
//! chromedriver (WebDriver, driven by `fantoccini`). A good release rolls out
//! and the page lists it with the wave counts its `/status` has; then a bad
//! release (its health probe fails on the canaries) halts at its first wave,
//! and the page shows a red `HALTED:` banner with the reason.
//!
//! Without `chromium` and `chromedriver` on the PATH (Debian packages
//! `chromium` and `chromium-driver`; `.ci/run` installs them) the browser
//! test prints `SKIPPED dashboard: …` on stderr and passes. Set
//! `WAVEGUARD_DASHBOARD_SCREENSHOT=/some/dir` to keep screenshots of the page.
//! The other tests here need no browser.

use fantoccini::{Client, ClientBuilder, Locator};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use waveguard_agent::api::{self, ApiState, StatusView};
use waveguard_agent::cli::status::http_get;
use waveguard_agent::cli::{run_at, Outcome};
use waveguard_agent::config::HooksConfig;
use waveguard_agent::driver::{now, Counters, PeerSample, Shared};
use waveguard_agent::metrics::PeerClass;
use waveguard_agent::net::Traffic;
use waveguard_agent::testbed::{wait_for, AgentSpec, ReleaseSpec, RolloutSpec, Testbed};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::{NodeId, ReleaseId};

// ---------------------------------------------------------------- no browser

/// An API server over `state` on an ephemeral loopback port, in its own runtime.
struct TestApi {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn serve(state: ApiState) -> TestApi {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(api::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(api::serve(listener, state, std::future::pending()));
    TestApi {
        addr,
        _runtime: runtime,
    }
}

/// The raw answer to `GET path` (status line and headers included).
fn raw_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_page_is_served_at_the_root_and_at_dashboard_and_loads_nothing_else() {
    let api = serve(ApiState {
        shared: Shared::default(),
        node: NodeId([3; 32]),
    });
    for path in ["/", "/dashboard"] {
        let body = http_get(api.addr, path).unwrap();
        assert_eq!(
            body,
            waveguard_agent::dashboard::INDEX_HTML.as_bytes(),
            "{path}"
        );
        let raw = raw_get(api.addr, path).to_ascii_lowercase();
        assert!(
            raw.contains("content-type: text/html; charset=utf-8"),
            "{path}: {raw:.400}"
        );
        assert!(
            raw.contains("content-security-policy: default-src 'none'"),
            "{path}: {raw:.600}"
        );
        assert!(raw.contains("connect-src 'self'"), "{path}");
    }
}

#[test]
fn status_splits_connected_peers_by_class_and_carries_rates() {
    let mut counters = Counters::default();
    counters.traffic.add(
        PeerClass::Wan,
        Traffic {
            sent: 10,
            received: 4096,
        },
    );
    counters.rate.add(
        PeerClass::Wan,
        Traffic {
            sent: 5,
            received: 2048,
        },
    );
    counters.connected_lan = 1;
    counters.connected_wan = 2;
    counters.peers = vec![PeerSample {
        node: NodeId([9; 32]),
        class: PeerClass::Lan,
        traffic: Traffic {
            sent: 7,
            received: 8,
        },
        score: Some(-3),
    }];
    let view = StatusView::of(&NodeId([3; 32]), None, &counters, &[]);
    assert_eq!((view.connected.lan, view.connected.wan), (1, 2));
    let peer = &view.connected.list[0];
    assert_eq!(peer.id, NodeId([9; 32]).to_peer_id_string());
    assert_eq!(peer.score, Some(-3));
    assert_eq!((peer.class.as_str(), peer.up, peer.down), ("lan", 7, 8));
    let wan = view
        .counters
        .traffic
        .iter()
        .find(|t| t.class == "wan")
        .unwrap();
    assert_eq!(
        (wan.up, wan.down, wan.up_rate, wan.down_rate),
        (10, 4096, 5, 2048)
    );
    // Both ways through JSON, and an older agent's answer (no peers, no rates) still reads.
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(
        serde_json::from_value::<StatusView>(json.clone()).unwrap(),
        view
    );
    let mut old = json;
    old.as_object_mut().unwrap().remove("connected");
    for t in old["counters"]["traffic"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("up_rate");
        t.as_object_mut().unwrap().remove("down_rate");
    }
    let read: StatusView = serde_json::from_value(old).unwrap();
    assert_eq!(read.connected, api::PeersView::default());
    assert_eq!(read.counters.traffic[1].down_rate, 0);
}

#[test]
fn status_shows_when_each_ban_ends() {
    use waveguard_agent::driver::BanRecord;
    use waveguard_protocol::Timestamp;
    let mut counters = Counters {
        bans_lifted: 2,
        ..Counters::default()
    };
    counters.recent_bans.push_back(BanRecord {
        node: NodeId([7; 32]),
        reason: "gossip score -100 below the graylist threshold".into(),
        score: Some(-100),
        at: Timestamp(1_000),
        until: Some(Timestamp(601_000)),
    });
    counters.recent_bans.push_back(BanRecord {
        node: NodeId([8; 32]),
        reason: "sent a corrupt chunk".into(),
        score: None,
        at: Timestamp(2_000),
        until: None,
    });
    let view = StatusView::of(&NodeId([3; 32]), None, &counters, &[]);
    let bans = &view.counters.recent_bans;
    assert_eq!((bans[0].at_ms, bans[0].until_ms), (1_000, Some(601_000)));
    assert_eq!(
        bans[1].until_ms, None,
        "a ban without an end (an older agent's engine ban)"
    );
    assert_eq!(view.counters.bans_lifted, 2);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["counters"]["recent_bans"][0]["until_ms"], 601_000);
    assert!(json["counters"]["recent_bans"][1].get("until_ms").is_none());
    // An older agent's ban (no end) still reads.
    let mut old = json;
    old["counters"]["recent_bans"][0]
        .as_object_mut()
        .unwrap()
        .remove("until_ms");
    old["counters"]
        .as_object_mut()
        .unwrap()
        .remove("bans_lifted");
    let read: StatusView = serde_json::from_value(old).unwrap();
    assert_eq!(read.counters.recent_bans[0].until_ms, None);
    assert_eq!(read.counters.bans_lifted, 0);
}

// ------------------------------------------------------------- the browser

/// The first of `names` found on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver process, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it listens.
    fn start(bin: &Path) -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A headless Chromium session.
    async fn browser(&self, chromium: &Path, profile: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

const PROBE_VERSION: &str = "1.0";

/// Two waves, short bakes: three canaries decide the gate.
fn rollout() -> RolloutSpec {
    RolloutSpec {
        waves: "canary:50%:2s,all:100%:1s".into(),
        max_failure: "5%".into(),
        min_reports: 3,
        silence: "6s".into(),
        heartbeat: "1s".into(),
    }
}

/// Healthy only on version 1.0: the second release's probe fails.
fn hooks() -> HooksConfig {
    HooksConfig {
        probe: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("test \"$WAVEGUARD_VERSION\" = {PROBE_VERSION}"),
        ]),
        timeout_secs: 5,
        ..HooksConfig::default()
    }
}

/// Publishes version `version` (pseudo-random bytes of its own) into the
/// testbed's release directory with wave 0 opening `start_in_secs` from now,
/// and hands it to agent `seeder` as a bundle (`POST /bundle` does the same),
/// which gossips the new metadata to the mesh.
async fn publish_and_seed(
    bed: &Testbed,
    dir: &Path,
    seeder: usize,
    version: &str,
    start_in_secs: u64,
) -> ReleaseId {
    let artifact = dir.join(format!("app-{version}.bin"));
    let mut xof = blake3::Hasher::new()
        .update(version.as_bytes())
        .finalize_xof();
    let mut bytes = vec![0u8; 384 * 1024];
    xof.fill(&mut bytes);
    std::fs::write(&artifact, &bytes).unwrap();
    let at = now();
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let spec = rollout();
    let args = [
        "waveguard".to_string(),
        "publish".into(),
        p(&artifact),
        "--repo".into(),
        p(&bed.repo()),
        "--product".into(),
        "acme".into(),
        "--version".into(),
        version.into(),
        "--key".into(),
        p(&bed.vendor_key()),
        "--start".into(),
        at.plus_secs(start_in_secs).to_rfc3339(),
        "--chunk-avg".into(),
        "64KiB".into(),
        "--waves".into(),
        spec.waves,
        "--max-failure".into(),
        spec.max_failure,
        "--min-reports".into(),
        spec.min_reports.to_string(),
        "--silence".into(),
        spec.silence,
        "--heartbeat".into(),
        spec.heartbeat,
    ];
    let Outcome::Publish(report) = run_at(args, at).expect("publish") else {
        panic!("publish reported something else");
    };
    let bundle = dir.join(format!("acme-{version}.wgb"));
    waveguard_agent::bundle::export(
        &waveguard_agent::bundle::Source::Repo {
            dir: bed.repo(),
            root: None,
        },
        &report.release.to_hex(),
        None,
        &bundle,
        at,
        false,
    )
    .expect("bundle export");
    bed.members[seeder]
        .shared
        .submit_bundle(bundle)
        .await
        .expect("the seeder answers")
        .expect("the seeder imports the bundle");
    report.release
}

/// Keeps a screenshot of the page if WAVEGUARD_DASHBOARD_SCREENSHOT names a directory.
async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("WAVEGUARD_DASHBOARD_SCREENSHOT") else {
        return;
    };
    match client.screenshot().await {
        Ok(png) => {
            let path = PathBuf::from(dir).join(format!("{name}.png"));
            std::fs::write(&path, png).unwrap();
            eprintln!("screenshot: {}", path.display());
        }
        Err(e) => eprintln!("no screenshot {name}: {e}"),
    }
}

/// What the page shows of one release: its state and, per wave, its counts and gate.
type PageRelease = (String, BTreeMap<u32, BTreeMap<&'static str, String>>);

const WAVE_FIELDS: [&str; 7] = [
    "eligible",
    "installed",
    "healthy",
    "failed",
    "silent",
    "reporting",
    "gate",
];

/// Reads, as rendered text, what the page shows of the releases `status` lists.
async fn page_releases(
    client: &Client,
    status: &StatusView,
) -> Result<BTreeMap<String, PageRelease>, fantoccini::error::CmdError> {
    let mut out = BTreeMap::new();
    for r in &status.releases {
        let card = client
            .find(Locator::Css(&format!(
                "#releases .release[data-release=\"{}\"]",
                r.id
            )))
            .await?;
        let state = card
            .find(Locator::Css("[data-field=\"state\"]"))
            .await?
            .text()
            .await?;
        let mut waves = BTreeMap::new();
        for w in &r.waves {
            let row = card
                .find(Locator::Css(&format!("tr[data-wave=\"{}\"]", w.wave)))
                .await?;
            let mut cells = BTreeMap::new();
            for f in WAVE_FIELDS {
                let text = row
                    .find(Locator::Css(&format!("td[data-field=\"{f}\"]")))
                    .await?
                    .text()
                    .await?;
                cells.insert(f, text.trim().to_string());
            }
            waves.insert(w.wave, cells);
        }
        out.insert(r.id.clone(), (state.trim().to_string(), waves));
    }
    Ok(out)
}

/// The same from the status document.
fn status_releases(status: &StatusView) -> BTreeMap<String, PageRelease> {
    status
        .releases
        .iter()
        .map(|r| {
            let waves = r
                .waves
                .iter()
                .map(|w| {
                    let values = [
                        w.eligible.to_string(),
                        w.installed.to_string(),
                        w.healthy.to_string(),
                        w.failed.to_string(),
                        w.silent.to_string(),
                        w.reporting.to_string(),
                        w.gate.clone(),
                    ];
                    (w.wave, WAVE_FIELDS.into_iter().zip(values).collect())
                })
                .collect();
            (r.id.clone(), (r.state.clone(), waves))
        })
        .collect()
}

/// Waits until the page shows exactly what `/status` says of every release
/// (the page polls once a second, so it may lag a poll behind).
async fn page_matches_status(client: &Client, api: &ApiState, what: &str) -> StatusView {
    let started = Instant::now();
    loop {
        let status = api.status();
        let page = page_releases(client, &status).await;
        // The page is read first; a status that still says the same proves they agree.
        let expected = status_releases(&status);
        let status_after = api.status();
        match page {
            Ok(page) if page == expected && status_releases(&status_after) == expected => {
                return status;
            }
            other => {
                if started.elapsed() > Duration::from_secs(20) {
                    panic!(
                        "{what}: the page never matched /status within 20 s\npage: {other:?}\nstatus: {expected:?}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the element at `css` shows text for which `ok` holds; returns the text.
async fn wait_text(client: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let last = match client.find(Locator::Css(css)).await {
            Ok(e) => match e.text().await {
                Ok(t) if ok(&t) => return t,
                other => format!("{other:?}"),
            },
            Err(e) => e.to_string(),
        };
        if started.elapsed() > Duration::from_secs(20) {
            panic!("{css} never showed the expected text within 20 s; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The release's view in the agent's status (if it follows the release).
fn release_view(api: &ApiState, id: &ReleaseId) -> Option<api::ReleaseView> {
    let hex = id.to_hex();
    api.status().releases.into_iter().find(|r| r.id == hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_releases_wave_counts_peers_and_a_halt_on_the_dashboard() {
    let (Some(chromedriver), Some(chromium)) = (
        on_path(&["chromedriver"]),
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        // Straight to the process's stderr: the test harness captures eprintln!, and a
        // skip must show in the log of a passing run.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED dashboard: chromium and chromedriver are not both on the PATH \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let spec = ReleaseSpec {
        size: 384 * 1024,
        chunk_avg: "64KiB".into(),
        start_in_secs: 6,
        rollout: rollout(),
        operator: false,
    };
    let (mut bed, good) = Testbed::publish(tmp.path(), &spec).expect("publish the good release");
    let seeder = bed
        .start(&AgentSpec {
            seed: true,
            ..AgentSpec::default()
        })
        .await
        .expect("the seeder starts");
    for _ in 0..3 {
        bed.start(&AgentSpec {
            pin: WavePin::Canary,
            hooks: hooks(),
            ..AgentSpec::default()
        })
        .await
        .expect("a canary starts");
    }
    let watched = bed
        .start(&AgentSpec {
            pin: WavePin::Last,
            hooks: hooks(),
            ..AgentSpec::default()
        })
        .await
        .expect("the last-wave agent starts");

    // The watched agent's HTTP API, as `waveguard agent` serves it.
    let state = ApiState {
        shared: bed.members[watched].shared.clone(),
        node: bed.members[watched].node,
    };
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state.clone(), async {
        let _ = api_stopped.await;
    }));

    let driver = ChromeDriver::start(&chromedriver);
    let client = driver
        .browser(&chromium, &tmp.path().join("chromium"))
        .await;
    client
        .goto(&format!("http://{api_addr}/"))
        .await
        .expect("the dashboard loads");

    // Who this is, and that the page is live.
    let peer_id = bed.members[watched].node.to_peer_id_string();
    wait_text(&client, "#node", |t| t == peer_id).await;
    wait_text(&client, "#conn", |t| t.starts_with("live")).await;

    // The good release rolls out to everyone; the page lists it as the status does.
    wait_for(
        "the good release healthy on the watched agent",
        Duration::from_secs(60),
        || release_view(&state, &good.release).is_some_and(|r| r.state == "healthy"),
    )
    .await
    .unwrap();
    let good_hex = good.release.to_hex();
    let card = format!("#releases .release[data-release=\"{good_hex}\"]");
    wait_text(&client, &format!("{card} [data-field=\"state\"]"), |t| {
        t == "healthy"
    })
    .await;
    let product = client
        .find(Locator::Css(&format!("{card} h3")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        product.contains("acme") && product.contains("1.0"),
        "{product}"
    );
    let status = page_matches_status(&client, &state, "after the good release").await;
    let waves = &status.releases[0].waves;
    assert_eq!(waves.len(), 2, "{waves:?}");
    assert_eq!(
        (waves[0].healthy, waves[0].gate.as_str()),
        (3, "passed"),
        "the three canaries passed wave 0: {waves:?}"
    );
    assert!(
        client
            .find_all(Locator::Css("#halts .halt"))
            .await
            .unwrap()
            .is_empty(),
        "a halt banner before anything halted"
    );

    // Peers, LAN / WAN, and transfer: the testbed has no mDNS, so every peer is WAN.
    let seeder_id = bed.members[seeder].node.to_peer_id_string();
    wait_text(
        &client,
        &format!("#peer-list tr[data-peer=\"{seeder_id}\"] td[data-field=\"class\"]"),
        |t| t == "WAN",
    )
    .await;
    let wan = wait_text(&client, "#peers-wan", |t| {
        t.parse::<usize>().is_ok_and(|n| n >= 1)
    })
    .await;
    assert_eq!(
        wait_text(&client, "#peers-lan", |t| !t.is_empty()).await,
        "0"
    );
    let connected_wan = state.status().connected.wan;
    assert!(
        wan.parse::<usize>().unwrap().abs_diff(connected_wan) <= 1,
        "page {wan} WAN peers, status {connected_wan}"
    );
    // It fetched the release, so it received bytes; rates read as bytes per second.
    wait_text(&client, "#bytes-wan-down", |t| {
        t != "0 B" && t.ends_with('B')
    })
    .await;
    for id in ["#rate-up", "#rate-down", "#rate-wan-down", "#rate-lan-up"] {
        wait_text(&client, id, |t| t.ends_with("B/s")).await;
    }
    screenshot(&client, "dashboard-good").await;

    // The bad release: its probe fails on the canaries, so wave 0's gate fails.
    let bad = publish_and_seed(&bed, tmp.path(), seeder, "2.0", 3).await;
    let bad_hex = bad.to_hex();
    wait_for(
        "the bad release to halt on the watched agent",
        Duration::from_secs(60),
        || release_view(&state, &bad).is_some_and(|r| r.halt_reason.is_some()),
    )
    .await
    .unwrap();
    let reason = release_view(&state, &bad)
        .and_then(|r| r.halt_reason)
        .unwrap();
    assert!(reason.starts_with("wave 0 gate failed"), "{reason}");

    // The banner a person sees: red, at the top, "HALTED: <reason>".
    let banner_css = format!("#halts .halt[data-release=\"{bad_hex}\"]");
    let banner = wait_text(&client, &banner_css, |t| t.starts_with("HALTED:")).await;
    assert!(
        banner.contains(&reason),
        "banner {banner:?}, reason {reason:?}"
    );
    assert!(banner.contains("acme 2.0"), "{banner}");
    let element = client.find(Locator::Css(&banner_css)).await.unwrap();
    assert!(element.is_displayed().await.unwrap());
    let colour = element.css_value("background-color").await.unwrap();
    let rgb: Vec<u32> = colour
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    assert!(
        rgb.len() >= 3 && rgb[0] > 150 && rgb[1] < 100 && rgb[2] < 100,
        "the banner is not red: {colour}"
    );
    let (_, banner_y, _, _) = element.rectangle().await.unwrap();
    let (_, releases_y, _, _) = client
        .find(Locator::Css("#releases-section"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    assert!(banner_y < releases_y, "the banner is above the releases");
    assert!(client.title().await.unwrap().contains("HALTED"));

    // Both releases, their states and every wave's counts as /status has them.
    let status = page_matches_status(&client, &state, "after the halt").await;
    let view = status.releases.iter().find(|r| r.id == bad_hex).unwrap();
    assert_eq!(view.state, "halted");
    assert_eq!(view.waves[0].gate, "failed", "{:?}", view.waves);
    assert!(
        view.waves[0].failed + view.waves[0].silent >= 3,
        "{:?}",
        view.waves
    );
    let line = wait_text(
        &client,
        &format!("#releases .release[data-release=\"{bad_hex}\"] .halted-line"),
        |t| !t.is_empty(),
    )
    .await;
    assert!(line.contains(&reason), "{line}");
    let good_state = client
        .find(Locator::Css(&format!("{card} [data-field=\"state\"]")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(good_state, "healthy", "the good release stays healthy here");
    screenshot(&client, "dashboard-halted").await;

    // When the agent stops answering, the page says so instead of showing old numbers as live.
    let _ = stop_api.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    wait_text(&client, "#conn", |t| t.starts_with("agent not answering")).await;

    client.close().await.unwrap();
    drop(driver);
    bed.shutdown().await;
}
