//! `waveguard status`: asks a running agent's HTTP API for `/status` and
//! prints it readably: the agent, then per release its state and a table of
//! its waves (eligible, installed, healthy, failed, silent, gate) and why it
//! halted.
//!
//! The request is a plain HTTP/1.1 GET over a blocking `std` TCP stream with
//! timeouts and a size cap: the command needs nothing more, and so needs no
//! async runtime or HTTP client crate. `waveguard halt` and `resume` use the
//! same client ([`http_request`]) to POST a directive.

use crate::api::{ReleaseView, StatusView, WaveView};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use thiserror::Error;
use waveguard_protocol::clock::ClockCheck;

/// The agent's default API address (the `[api] listen` default).
pub const DEFAULT_API: &str = "127.0.0.1:7070";

/// Largest response read from the API. A status of the most releases an
/// engine follows (64) with the most waves (16) is a few hundred KiB; this
/// leaves room and still stops a runaway or hostile listener.
pub const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// How long to wait for the connection: the API is local, so a slow connect
/// means nothing useful is listening.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait for each read or write once connected.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `waveguard status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// The agent's HTTP API address (its config's `[api] listen`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    pub api: SocketAddr,
}

/// A request to the agent's API failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HttpGetError {
    /// Nothing accepted the connection.
    #[error("no agent is listening on {addr} ({source}); start one with `waveguard agent` or pass the right --api address")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke or timed out.
    #[error("the agent at {addr} did not answer: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The response was larger than the limit ([`MAX_RESPONSE_BYTES`] unless raised).
    #[error("the answer from {addr} is larger than {limit} bytes")]
    TooLarge {
        /// The address.
        addr: SocketAddr,
        /// The limit.
        limit: u64,
    },
    /// The response was not HTTP/1.1 this client understands.
    #[error("{addr} did not answer with a plain HTTP response: {detail}")]
    Malformed {
        /// The address.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// The response had a status other than 200.
    #[error("{addr} answered {path} with HTTP status {code}")]
    Status {
        /// The address.
        addr: SocketAddr,
        /// The path requested.
        path: String,
        /// The HTTP status code.
        code: u16,
    },
}

/// `waveguard status` could not get a status.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The request failed.
    #[error(transparent)]
    Get(#[from] HttpGetError),
    /// The answer was not a waveguard status document.
    #[error("the answer from {addr} is not a waveguard status: {source}")]
    Json {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: serde_json::Error,
    },
}

/// An answer of the agent's API, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub code: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends `GET path` to `addr` and returns the body of a 200 response.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, HttpGetError> {
    let response = http_request(addr, "GET", path, None)?;
    ok_body(addr, path, response)
}

/// Sends `method path` to `addr`, with `body` as JSON if given, and returns
/// the answer whatever its status (an API's error answers carry a reason).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<HttpResponse, HttpGetError> {
    http_exchange(
        addr,
        method,
        path,
        body.map(|b| ("application/json", b)),
        MAX_RESPONSE_BYTES,
        IO_TIMEOUT,
    )
}

/// Like [`http_request`], with the body's content type, the largest response
/// to read and how long to wait for it (`waveguard bundle` moves health
/// bundles larger than a status, and a bundle import takes a while).
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    limit: u64,
    read_timeout: Duration,
) -> Result<HttpResponse, HttpGetError> {
    let io = |source| HttpGetError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|source| HttpGetError::Connect { addr, source })?;
    stream.set_read_timeout(Some(read_timeout)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let content = match body {
        Some((kind, b)) => format!("Content-Type: {kind}\r\nContent-Length: {}\r\n", b.len()),
        None => String::new(),
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n{content}Connection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body.map(|(_, b)| b).unwrap_or_default());
    stream.write_all(&request).map_err(io)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() as u64 > limit {
        return Err(HttpGetError::TooLarge { addr, limit });
    }
    split_response(addr, raw)
}

/// The body of a 200 answer to `path`; any other status is an error.
fn ok_body(addr: SocketAddr, path: &str, r: HttpResponse) -> Result<Vec<u8>, HttpGetError> {
    if r.code != 200 {
        return Err(HttpGetError::Status {
            addr,
            path: path.to_string(),
            code: r.code,
        });
    }
    Ok(r.body)
}

/// The body of a `Connection: close` HTTP/1.1 response to `path` if its status is 200.
#[cfg(test)]
fn parse_response(addr: SocketAddr, path: &str, raw: Vec<u8>) -> Result<Vec<u8>, HttpGetError> {
    ok_body(addr, path, split_response(addr, raw)?)
}

/// Splits a `Connection: close` HTTP/1.1 response into status and body.
fn split_response(addr: SocketAddr, raw: Vec<u8>) -> Result<HttpResponse, HttpGetError> {
    let malformed = |detail: &str| HttpGetError::Malformed {
        addr,
        detail: detail.to_string(),
    };
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("the headers never end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| malformed("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(malformed("the status line is not HTTP/1.x"));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| malformed("the status line has no status code"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            return Err(malformed("chunked transfer encoding is not supported"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| malformed("the Content-Length is not a number"))?,
            );
        }
    }
    let mut body = raw;
    body.drain(..end + 4);
    if let Some(length) = length {
        if body.len() < length {
            return Err(malformed("the body is shorter than its Content-Length"));
        }
        body.truncate(length);
    }
    Ok(HttpResponse { code, body })
}

/// Fetches and decodes `/status` from the agent at `addr`.
pub fn fetch(addr: SocketAddr) -> Result<StatusView, StatusError> {
    let body = http_get(addr, "/status")?;
    serde_json::from_slice(&body).map_err(|source| StatusError::Json { addr, source })
}

/// What `waveguard status` prints.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The agent's status.
    pub status: StatusView,
}

/// Runs `waveguard status`.
pub fn run(a: &StatusArgs) -> anyhow::Result<StatusReport> {
    Ok(StatusReport {
        status: fetch(a.api)?,
    })
}

/// Bytes as a short human number (`512 B`, `1.5 KiB`, `3.0 MiB`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn percent(stored: u32, total: u32) -> u64 {
    match total {
        0 => 0,
        t => u64::from(stored) * 100 / u64::from(t),
    }
}

/// A wave's label: its index, then its name unless that is only `wave N`.
fn wave_label(w: &WaveView) -> String {
    if w.name.is_empty() || w.name == format!("wave {}", w.wave) {
        w.wave.to_string()
    } else {
        format!("{} {}", w.wave, w.name)
    }
}

/// The columns of the wave table after the label.
const WAVE_COLUMNS: [&str; 5] = ["eligible", "installed", "healthy", "failed", "silent"];

fn wave_counts(w: &WaveView) -> [u64; 5] {
    [w.eligible, w.installed, w.healthy, w.failed, w.silent]
}

/// One release: a header line, its chunks, a table of its waves (`*` marks
/// this node's) and why it halted, if it did.
fn write_release(f: &mut fmt::Formatter<'_>, r: &ReleaseView) -> fmt::Result {
    let short = r.id.get(..16).unwrap_or(&r.id);
    write!(
        f,
        "{} {}  (release {short}…)  state {}",
        r.product, r.version, r.state
    )?;
    if let Some(t) = r.since {
        write!(f, " since {t}")?;
    }
    match r.waves.iter().find(|w| w.wave == r.wave).map(wave_label) {
        Some(label) => write!(f, ", this node in wave {label}")?,
        None => write!(f, ", this node in wave {}", r.wave)?,
    }
    // Worth saying only when it does not: then its health is not watched.
    if r.reports {
        writeln!(f)?;
    } else {
        writeln!(f, " (outside the report sample: sends no health reports)")?;
    }
    if r.chunks_total == 0 {
        writeln!(
            f,
            "  chunks: {} (chunk list not known yet)",
            r.chunks_stored
        )?;
    } else {
        writeln!(
            f,
            "  chunks: {}/{} ({}%)",
            r.chunks_stored,
            r.chunks_total,
            percent(r.chunks_stored, r.chunks_total)
        )?;
    }
    if !r.waves.is_empty() {
        let labels: Vec<String> = r.waves.iter().map(wave_label).collect();
        let label_width = labels
            .iter()
            .map(|l| l.chars().count())
            .chain(std::iter::once("wave".len()))
            .max()
            .unwrap_or_default();
        let mut widths = WAVE_COLUMNS.map(str::len);
        for w in &r.waves {
            for (width, n) in widths.iter_mut().zip(wave_counts(w)) {
                *width = (*width).max(n.to_string().len());
            }
        }
        write!(f, "    {:<label_width$}", "wave")?;
        for (name, width) in WAVE_COLUMNS.iter().zip(widths) {
            write!(f, "  {name:>width$}")?;
        }
        writeln!(f, "  gate")?;
        for (w, label) in r.waves.iter().zip(&labels) {
            let mark = if w.this_node { '*' } else { ' ' };
            write!(f, "  {mark} {label:<label_width$}")?;
            for (n, width) in wave_counts(w).into_iter().zip(widths) {
                write!(f, "  {n:>width$}")?;
            }
            writeln!(f, "  {}", w.gate)?;
        }
    }
    // An older agent sends no `halt_reason`: word the structured reason here.
    match (&r.halt_reason, &r.halt) {
        (Some(reason), _) => writeln!(f, "  halted: {reason}")?,
        (None, Some(halt)) => writeln!(f, "  halted: {halt}")?,
        (None, None) => {}
    }
    Ok(())
}

/// What the status says about this node's clock, if peers' reports tell anything.
fn clock_line(check: Option<ClockCheck>, offset_ms: Option<i64>) -> Option<String> {
    let offset = offset_ms?;
    let side = if offset > 0 { "behind" } else { "ahead of" };
    let by = duration_ms(offset.unsigned_abs());
    match check? {
        ClockCheck::FarOff => Some(format!(
            "clock: FAR OFF, {by} {side} the fleet's (from peers' health reports); \
             installs wait until it is set right"
        )),
        ClockCheck::Agrees => Some(format!(
            "clock: agrees with the fleet's ({by} {side} it, by peers' health reports)"
        )),
        _ => None,
    }
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 0 min`.
fn duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{}.{} s", secs, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// The status as lines, each ending in a newline.
struct Lines<'a>(&'a StatusView);

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `main` adds the final newline.
        f.write_str(Lines(&self.status).to_string().trim_end())
    }
}

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        writeln!(f, "agent {}", s.node)?;
        if !s.ready {
            return writeln!(
                f,
                "  starting: the engine has not handled its first event yet"
            );
        }
        writeln!(
            f,
            "  root v{}, {} peers connected, {} banned",
            s.root_version, s.peers, s.banned
        )?;
        for addr in &s.listen {
            writeln!(f, "  listening on {addr}")?;
        }
        if let Some(line) = clock_line(s.clock, s.clock_offset_ms) {
            writeln!(f, "  {line}")?;
        }
        let c = &s.counters;
        writeln!(
            f,
            "  chunks: {} stored, {} rejected, {} store failures; {} peers banned, {} inputs refused",
            c.chunks_stored, c.chunks_rejected, c.store_failures, c.peers_banned, c.inputs_refused
        )?;
        if c.disk_full {
            writeln!(
                f,
                "  DISK FULL: the data directory's disk is full; fetching pauses, serving goes on. Free some space."
            )?;
        }
        for t in &c.traffic {
            writeln!(
                f,
                "  traffic {}: {} up, {} down",
                t.class,
                bytes(t.up),
                bytes(t.down)
            )?;
        }
        if let Some(site) = &s.site {
            let cap = match site.cap_bytes {
                0 => "no cap".to_string(),
                c => format!("cap {}", bytes(c)),
            };
            let now = match site.policy {
                Some(p) if p.wan_fetch && p.wan_serve => "WAN open",
                Some(p) if p.wan_fetch => "WAN open for fetching, uploads to WAN peers stopped",
                Some(_) => "WAN closed (outside its windows)",
                None => "WAN policy not evaluated yet",
            };
            writeln!(
                f,
                "  site: {} LAN peers (mDNS); {now}; WAN upload {}: {} ({cap})",
                site.lan_peers,
                site.month,
                bytes(site.wan_upload_bytes)
            )?;
        }
        if s.releases.is_empty() {
            return writeln!(f, "no releases yet");
        }
        for r in &s.releases {
            write_release(f, r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn bodies_are_cut_at_their_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk".to_vec();
        assert_eq!(parse_response(addr(), "/status", raw).unwrap(), b"{}");
    }

    #[test]
    fn error_statuses_and_garbage_are_errors() {
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec();
        let err = parse_response(addr(), "/status", raw).unwrap_err();
        assert!(err.to_string().contains("status 404"), "{err}");
        let err = parse_response(addr(), "/status", b"SSH-2.0-x\r\n".to_vec()).unwrap_err();
        assert!(matches!(err, HttpGetError::Malformed { .. }), "{err}");
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let err = parse_response(addr(), "/status", raw.to_vec()).unwrap_err();
        assert!(err.to_string().contains("chunked"), "{err}");
    }

    #[test]
    fn the_site_line_shows_the_month_against_the_cap() {
        let view: crate::api::StatusView = serde_json::from_value(serde_json::json!({
            "node": "12D3KooW", "node_hex": "00", "ready": true, "peers": 3, "banned": 0,
            "root_version": 1, "listen": [],
            "counters": serde_json::to_value(crate::api::CountersView::default()).unwrap(),
            "releases": [],
            "site": {
                "month": "2026-12", "wan_upload_bytes": 3145728, "cap_bytes": 1073741824,
                "lan_peers": 4,
                "policy": {"wan_fetch": true, "wan_serve": false, "lan_fetch": true, "lan_serve": true}
            }
        }))
        .unwrap();
        let text = Lines(&view).to_string();
        assert!(
            text.contains("site: 4 LAN peers")
                && text.contains("uploads to WAN peers stopped")
                && text.contains("WAN upload 2026-12: 3.0 MiB (cap 1.0 GiB)"),
            "{text}"
        );
    }

    #[test]
    fn the_clock_line_shows_a_far_off_clock_and_old_answers_have_none() {
        let mut json = serde_json::json!({
            "node": "12D3KooW", "node_hex": "00", "ready": true, "peers": 3, "banned": 0,
            "root_version": 1, "listen": [],
            "counters": serde_json::to_value(crate::api::CountersView::default()).unwrap(),
            "releases": []
        });
        // An older agent's answer: no clock fields, no clock line.
        let old: crate::api::StatusView = serde_json::from_value(json.clone()).unwrap();
        assert_eq!((old.clock, old.clock_offset_ms), (None, None));
        assert!(!Lines(&old).to_string().contains("clock"));
        json["clock"] = "far-off".into();
        json["clock_offset_ms"] = (-7_260_000i64).into();
        let view: crate::api::StatusView = serde_json::from_value(json).unwrap();
        let text = Lines(&view).to_string();
        assert!(
            text.contains("clock: FAR OFF, 2 h 1 min ahead of the fleet's"),
            "{text}"
        );
        let back = serde_json::to_value(&view).unwrap();
        assert_eq!(back["clock"], "far-off");
        assert_eq!(
            clock_line(Some(ClockCheck::Agrees), Some(1_200)).as_deref(),
            Some("clock: agrees with the fleet's (1.2 s behind it, by peers' health reports)")
        );
        assert_eq!(clock_line(Some(ClockCheck::Unknown), None), None);
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 0), 0);
    }
}
