//! Per-node results (`nodes.csv`): for each endpoint its site, wave, connection
//! count, role in the faults, and when it held its first chunk, finished downloading, installed and
//! learned of a halt — so researchers can ask which nodes were late and why.

use super::series::WriteCsvError;
use std::io::Write;
use std::path::Path;

/// One endpoint's outcome.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRecord {
    /// Node index (1.. are endpoints; the seeder, 0, is not listed).
    pub node: u64,
    /// Its site's name.
    pub site: String,
    /// Its wave for the release.
    pub wave: u32,
    /// Connections it had at the start.
    pub degree: u32,
    /// It served corrupted chunks.
    pub corrupt: bool,
    /// How it lied about health (`forge`, `withhold`), if it did.
    pub lie: Option<&'static str>,
    /// How it lied about the chunks it holds (`not-found`, `stall`), if it did.
    pub have_lie: Option<&'static str>,
    /// Seconds from publishing until it held its first chunk of the release.
    pub first_chunk_s: Option<f64>,
    /// Seconds from publishing until it held the whole release.
    pub downloaded_s: Option<f64>,
    /// Seconds from publishing until it installed.
    pub installed_s: Option<f64>,
    /// Seconds from publishing until it learned of a halt.
    pub knew_halt_s: Option<f64>,
    /// It died (a bad release crashed it).
    pub dead: bool,
    /// Endpoints of the fleet this record stands for: 1, plus the members
    /// following it in a sampled fleet.
    pub stands_for: u64,
}

/// The CSV header.
pub const NODES_HEADER: &str =
    "node,site,wave,degree,corrupt,lie,have_lie,first_chunk_s,downloaded_s,installed_s,knew_halt_s,dead,stands_for";

/// Writes `records` as CSV (empty cells where a time or lie is absent).
pub fn write_nodes_csv_to<W: Write>(records: &[NodeRecord], mut out: W) -> std::io::Result<()> {
    let t = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    writeln!(out, "{NODES_HEADER}")?;
    for r in records {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.node,
            r.site.replace([',', '"', '\n'], "_"),
            r.wave,
            r.degree,
            u8::from(r.corrupt),
            r.lie.unwrap_or(""),
            r.have_lie.unwrap_or(""),
            t(r.first_chunk_s),
            t(r.downloaded_s),
            t(r.installed_s),
            t(r.knew_halt_s),
            u8::from(r.dead),
            r.stands_for
        )?;
    }
    out.flush()
}

/// Writes `records` to `path` as CSV, replacing any existing file.
pub fn write_nodes_csv(
    records: &[NodeRecord],
    path: impl AsRef<Path>,
) -> Result<(), WriteCsvError> {
    let path = path.as_ref();
    let io = |source| WriteCsvError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    write_nodes_csv_to(records, std::io::BufWriter::new(file)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_every_column_and_blanks_for_absent_values() {
        let records = vec![
            NodeRecord {
                node: 1,
                site: "hq".into(),
                wave: 0,
                degree: 7,
                first_chunk_s: Some(0.25),
                downloaded_s: Some(12.5),
                installed_s: Some(60.0),
                stands_for: 1,
                ..NodeRecord::default()
            },
            NodeRecord {
                node: 2,
                site: "a,b".into(),
                wave: 2,
                degree: 3,
                corrupt: true,
                lie: Some("forge"),
                have_lie: Some("stall"),
                dead: true,
                stands_for: 40,
                ..NodeRecord::default()
            },
        ];
        let mut out = Vec::new();
        write_nodes_csv_to(&records, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], NODES_HEADER);
        assert_eq!(lines[1], "1,hq,0,7,0,,,0.250,12.500,60.000,,0,1");
        assert_eq!(lines[2], "2,a_b,2,3,1,forge,stall,,,,,1,40");
        let columns = NODES_HEADER.split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == columns));
    }
}
