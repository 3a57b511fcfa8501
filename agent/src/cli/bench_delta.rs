//! `waveguard bench delta`: what content-defined chunking saves on a realistic
//! change. Builds a deterministic tar-like archive of many pseudo-random files
//! of varied sizes (seeded, no network), changes a share of the files (edited
//! in place, grown, added, removed), chunks both versions with the release
//! chunker's default parameters and counts the bytes a node holding the old
//! version must fetch: the new version's chunks whose hashes the old one
//! lacks.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashSet;
use waveguard_protocol::chunker::{chunk_bytes, ChunkerError};
use waveguard_protocol::release::ChunkerParams;

/// tar's block size: headers and padding come in these.
const BLOCK: usize = 512;

/// One file of the archive.
#[derive(Clone, Debug)]
struct File {
    name: String,
    data: Vec<u8>,
}

/// What one measurement found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaReport {
    /// Files in the old archive.
    pub files: usize,
    /// Files touched by the change (edited, grown, added, removed).
    pub changed_files: usize,
    /// Size of the old archive.
    pub old_bytes: u64,
    /// Size of the new archive.
    pub new_bytes: u64,
    /// Chunks of the new archive.
    pub new_chunks: usize,
    /// Chunks of the new archive the old one lacks.
    pub missing_chunks: usize,
    /// Bytes of those chunks: what a node holding the old version fetches.
    pub fetch_bytes: u64,
    /// Bytes of the files' contents that actually changed (edits, growth, added files).
    pub changed_content_bytes: u64,
}

/// A file size between 1 KiB and 2 MiB, log-uniform: many small files, a few large.
fn file_size(rng: &mut ChaCha8Rng) -> usize {
    let exp = 10.0 + (rng.next_u32() as f64 / f64::from(u32::MAX)) * 11.0;
    exp.exp2() as usize
}

fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// The archive: per file a 512-byte header (name and size, as tar's are
/// mostly), then the contents padded to a whole block.
fn archive(files: &[File]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        let mut header = [0u8; BLOCK];
        let name = f.name.as_bytes();
        header[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        let size = format!("{:011o}", f.data.len());
        header[124..124 + size.len()].copy_from_slice(size.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&f.data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// Changes `percent` of the files: 40 % of those edited in place (a 1–8 KiB
/// run overwritten), 30 % grown (1–64 KiB appended), 15 % removed, and as many
/// new files added as 15 % of them. Returns the new files and the content bytes changed.
fn change(files: &[File], percent: f64, rng: &mut ChaCha8Rng) -> (Vec<File>, usize, u64) {
    let mut new = files.to_vec();
    let count = ((files.len() as f64) * percent / 100.0).round() as usize;
    let (edits, grows, removes) = (count * 40 / 100, count * 30 / 100, count * 15 / 100);
    let adds = count - edits - grows - removes;
    let mut changed_bytes = 0u64;
    let mut touched = HashSet::new();
    let mut pick = |rng: &mut ChaCha8Rng, len: usize| loop {
        let i = below(rng, len);
        if touched.insert(i) {
            return i;
        }
    };
    for _ in 0..edits {
        let i = pick(rng, new.len());
        let run = 1024 + below(rng, 7 * 1024);
        let f = &mut new[i].data;
        let at = below(rng, f.len().saturating_sub(run).max(1));
        let end = (at + run).min(f.len());
        let fresh = random_bytes(rng, end - at);
        f[at..end].copy_from_slice(&fresh);
        changed_bytes += (end - at) as u64;
    }
    for _ in 0..grows {
        let i = pick(rng, new.len());
        let grow = 1024 + below(rng, 63 * 1024);
        let more = random_bytes(rng, grow);
        new[i].data.extend_from_slice(&more);
        changed_bytes += grow as u64;
    }
    let mut removed: Vec<usize> = (0..removes).map(|_| pick(rng, files.len())).collect();
    removed.sort_unstable_by(|a, b| b.cmp(a));
    for i in removed {
        new.remove(i);
    }
    for k in 0..adds {
        let size = file_size(rng);
        let data = random_bytes(rng, size);
        changed_bytes += size as u64;
        let at = below(rng, new.len() + 1);
        new.insert(
            at,
            File {
                name: format!("new/file-{k:05}.bin"),
                data,
            },
        );
    }
    (new, count, changed_bytes)
}

/// The chunker parameters for an average chunk of `avg` bytes (min a
/// quarter, max four times, as the defaults are); `None`: the defaults.
pub fn params(avg: Option<u32>) -> ChunkerParams {
    match avg {
        None => ChunkerParams::default(),
        Some(avg) => ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
            ..ChunkerParams::default()
        },
    }
}

/// Builds `files` files from `seed`, changes `percent` of them, chunks both
/// archives with `params` and measures.
pub fn measure(
    files: usize,
    percent: f64,
    seed: u64,
    params: &ChunkerParams,
) -> Result<DeltaReport, ChunkerError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let old_files: Vec<File> = (0..files)
        .map(|i| {
            let size = file_size(&mut rng);
            File {
                name: format!("usr/lib/acme/{:03}/file-{i:05}.bin", i % 97),
                data: random_bytes(&mut rng, size),
            }
        })
        .collect();
    let (new_files, changed_files, changed_content_bytes) = change(&old_files, percent, &mut rng);
    let (old, new) = (archive(&old_files), archive(&new_files));
    let old_list = chunk_bytes(&old, params)?;
    let new_list = chunk_bytes(&new, params)?;
    let held: HashSet<_> = old_list.chunks.iter().map(|c| c.hash).collect();
    let mut seen = HashSet::new();
    let missing: Vec<u64> = new_list
        .chunks
        .iter()
        // A chunk repeated in the new version is fetched once.
        .filter(|c| !held.contains(&c.hash) && seen.insert(c.hash))
        .map(|c| u64::from(c.length))
        .collect();
    Ok(DeltaReport {
        files,
        changed_files,
        old_bytes: old.len() as u64,
        new_bytes: new.len() as u64,
        new_chunks: new_list.chunks.len(),
        missing_chunks: missing.len(),
        fetch_bytes: missing.iter().sum(),
        changed_content_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_five_percent_change_fetches_a_small_share() {
        let r = measure(400, 5.0, 7, &params(None)).unwrap();
        assert_eq!(r.changed_files, 20);
        assert!(r.fetch_bytes >= r.changed_content_bytes, "{r:?}");
        // Below the full size: each changed file costs about one chunk.
        assert!(r.fetch_bytes * 2 < r.new_bytes, "{r:?}");
        assert!(
            r.missing_chunks > 0 && r.missing_chunks < r.new_chunks,
            "{r:?}"
        );
        // Smaller chunks fetch less around each change.
        let small = measure(400, 5.0, 7, &params(Some(256 * 1024))).unwrap();
        assert!(small.fetch_bytes < r.fetch_bytes, "{small:?} vs {r:?}");
    }

    #[test]
    fn no_change_fetches_nothing_and_the_run_is_deterministic() {
        let p = params(None);
        let r = measure(200, 0.0, 3, &p).unwrap();
        assert_eq!((r.fetch_bytes, r.missing_chunks), (0, 0));
        assert_eq!(
            measure(200, 5.0, 3, &p).unwrap(),
            measure(200, 5.0, 3, &p).unwrap()
        );
    }
}
