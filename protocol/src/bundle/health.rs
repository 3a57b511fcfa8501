//! Health bundles: the way back from an isolated site. One file carries the
//! signed health reports (with their fleet certificates) a node holds for one
//! release, so a connected node can feed them to its engine, which verifies
//! each one exactly like a report from gossip and passes on what it accepts.
//!
//! The file itself is not signed: every report is signed by its node, so a
//! forged or altered report fails on its own signature at the importer. This
//! module only frames and bounds the reports.
//!
//! Layout (integers big-endian):
//! ```text
//! "WGHEALTH" · version 0x01 · 3 zero bytes · release id (32) · report count u32
//! per report: report length u32 (1..=MAX_REPORT_BYTES) · report JSON ·
//!             certificate length u32 (0 = none, else ..=MAX_CERT_BYTES) · certificate JSON
//! ```

use crate::health::report::peek_release;
use crate::id::ReleaseId;
use crate::limits::{MAX_CERT_BYTES, MAX_REPORT_BYTES};
use crate::wire::SignedHealth;
use serde_bytes::ByteBuf;
use thiserror::Error;

/// Magic bytes at the start of a health bundle.
pub const HEALTH_MAGIC: [u8; 8] = *b"WGHEALTH";
/// Health bundle format version.
pub const HEALTH_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEALTH_HEADER_LEN: usize = 48;
/// Most reports one health bundle carries (one per node of a site).
pub const MAX_HEALTH_REPORTS: u32 = 4096;
/// Largest health bundle: the header and the most reports at their largest.
pub const MAX_HEALTH_BUNDLE_BYTES: u64 = HEALTH_HEADER_LEN as u64
    + MAX_HEALTH_REPORTS as u64 * (8 + MAX_REPORT_BYTES + MAX_CERT_BYTES) as u64;

/// A health bundle could not be read; nothing in it was used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthBundleError {
    /// Shorter than its header or one of its reports says.
    #[error("health bundle is truncated at byte {offset} (in report {report:?}): {wanted} bytes needed, {got} present")]
    Truncated {
        /// Offset where the short read began.
        offset: usize,
        /// The report being read (`None` in the header).
        report: Option<u32>,
        /// Bytes needed.
        wanted: usize,
        /// Bytes there were.
        got: usize,
    },
    /// Not a health bundle.
    #[error("not a waveguard health bundle (the magic bytes are wrong)")]
    BadMagic,
    /// A version this implementation does not read, or non-zero reserved bytes.
    #[error("health bundle format version {found} is not supported (this reads version {HEALTH_VERSION} with zero reserved bytes)")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// More reports than [`MAX_HEALTH_REPORTS`].
    #[error("health bundle declares {count} reports, over the limit of {MAX_HEALTH_REPORTS}")]
    TooManyReports {
        /// Reports declared.
        count: u32,
    },
    /// A report or certificate length is out of bounds.
    #[error("report {report}: {what} length {length} is outside {min}..={max}")]
    Length {
        /// The report.
        report: u32,
        /// `report` or `certificate`.
        what: &'static str,
        /// The length field.
        length: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A report is not a health report or is about another release than the header's.
    #[error("report {report}: {detail}")]
    BadReport {
        /// The report.
        report: u32,
        /// What was wrong.
        detail: String,
    },
    /// Bytes after the last report.
    #[error("health bundle has {extra} bytes after its last report")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// Writing a health bundle failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEncodeError {
    /// More reports than one bundle carries.
    #[error("{count} reports do not fit one health bundle (at most {MAX_HEALTH_REPORTS})")]
    TooManyReports {
        /// Reports given.
        count: usize,
    },
    /// A report or certificate is empty or over its size limit.
    #[error("report {report}: {what} of {length} bytes is over its limit")]
    TooLarge {
        /// The report.
        report: usize,
        /// `report` or `certificate`.
        what: &'static str,
        /// Its size.
        length: usize,
    },
}

/// Encodes the reports of `release`.
pub fn encode(release: &ReleaseId, reports: &[SignedHealth]) -> Result<Vec<u8>, HealthEncodeError> {
    if reports.len() > MAX_HEALTH_REPORTS as usize {
        return Err(HealthEncodeError::TooManyReports {
            count: reports.len(),
        });
    }
    let mut out = Vec::with_capacity(HEALTH_HEADER_LEN + reports.len() * 1024);
    out.extend_from_slice(&HEALTH_MAGIC);
    out.extend_from_slice(&[HEALTH_VERSION, 0, 0, 0]);
    out.extend_from_slice(&release.0);
    out.extend_from_slice(&(reports.len() as u32).to_be_bytes());
    for (i, r) in reports.iter().enumerate() {
        if r.report.is_empty() || r.report.len() > MAX_REPORT_BYTES {
            return Err(HealthEncodeError::TooLarge {
                report: i,
                what: "report",
                length: r.report.len(),
            });
        }
        out.extend_from_slice(&(r.report.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.report);
        let cert = r.cert.as_deref().map(|c| &c[..]).unwrap_or_default();
        if cert.len() > MAX_CERT_BYTES || r.cert.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(HealthEncodeError::TooLarge {
                report: i,
                what: "certificate",
                length: cert.len(),
            });
        }
        out.extend_from_slice(&(cert.len() as u32).to_be_bytes());
        out.extend_from_slice(cert);
    }
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    report: Option<u32>,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HealthBundleError> {
        let rest = self.bytes.len() - self.at;
        if n > rest {
            return Err(HealthBundleError::Truncated {
                offset: self.at,
                report: self.report,
                wanted: n,
                got: rest,
            });
        }
        let piece = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(piece)
    }

    fn u32(&mut self) -> Result<u32, HealthBundleError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Decodes a health bundle: framing, bounds, and that every report is a
/// health report about the header's release. Signatures are NOT checked here;
/// the engine checks each report against its fleet and the release.
pub fn decode(bytes: &[u8]) -> Result<(ReleaseId, Vec<SignedHealth>), HealthBundleError> {
    let mut c = Cursor {
        bytes,
        at: 0,
        report: None,
    };
    let header = c.take(HEALTH_HEADER_LEN)?;
    if header[..8] != HEALTH_MAGIC {
        return Err(HealthBundleError::BadMagic);
    }
    if header[8] != HEALTH_VERSION || header[9..12] != [0, 0, 0] {
        return Err(HealthBundleError::UnsupportedVersion { found: header[8] });
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&header[12..44]);
    let release = ReleaseId(id);
    let count = u32::from_be_bytes([header[44], header[45], header[46], header[47]]);
    if count > MAX_HEALTH_REPORTS {
        return Err(HealthBundleError::TooManyReports { count });
    }
    let mut reports = Vec::new();
    for i in 0..count {
        c.report = Some(i);
        let len = c.u32()?;
        if len == 0 || len as usize > MAX_REPORT_BYTES {
            return Err(HealthBundleError::Length {
                report: i,
                what: "report",
                length: len,
                min: 1,
                max: MAX_REPORT_BYTES as u32,
            });
        }
        let report = c.take(len as usize)?;
        let cert_len = c.u32()?;
        if cert_len as usize > MAX_CERT_BYTES {
            return Err(HealthBundleError::Length {
                report: i,
                what: "certificate",
                length: cert_len,
                min: 0,
                max: MAX_CERT_BYTES as u32,
            });
        }
        let cert = c.take(cert_len as usize)?;
        let sh = SignedHealth {
            report: ByteBuf::from(report.to_vec()),
            cert: (!cert.is_empty()).then(|| ByteBuf::from(cert.to_vec())),
        };
        match peek_release(&sh) {
            Ok(r) if r == release => {}
            Ok(r) => {
                return Err(HealthBundleError::BadReport {
                    report: i,
                    detail: format!("it is about release {r}, the bundle is for {release}"),
                })
            }
            Err(e) => {
                return Err(HealthBundleError::BadReport {
                    report: i,
                    detail: e.to_string(),
                })
            }
        }
        reports.push(sh);
    }
    if c.at != bytes.len() {
        return Err(HealthBundleError::TrailingBytes {
            extra: bytes.len() - c.at,
        });
    }
    Ok((release, reports))
}
