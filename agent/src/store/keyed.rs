//! Trees keyed by release ID whose values are opaque bytes with a size bound
//! (chunk lists, rollout records): reading them all back, refusing a tree
//! that holds anything this store would not have written.

use waveguard_protocol::ReleaseId;

/// Why a keyed tree could not be read.
pub(super) enum ReadFail {
    /// The database could not be read.
    Db(sled::Error),
    /// An entry is not one this store writes.
    Malformed(String),
}

/// Every entry of `tree` (in key order), refusing more than `max_count` entries, a key that
/// is not a release ID, or a value over `max_len` bytes; `what` names the values in messages.
pub(super) fn read(
    tree: &sled::Tree,
    what: &str,
    max_count: usize,
    max_len: u64,
) -> Result<Vec<(ReleaseId, Vec<u8>)>, ReadFail> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, value) = item.map_err(ReadFail::Db)?;
        if out.len() >= max_count {
            return Err(ReadFail::Malformed(format!(
                "more than {max_count} {what}s are stored"
            )));
        }
        let release = <[u8; 32]>::try_from(key.as_ref())
            .map(ReleaseId)
            .map_err(|_| {
                ReadFail::Malformed(format!("a {what} key is {} bytes, not 32", key.len()))
            })?;
        if value.len() as u64 > max_len {
            return Err(ReadFail::Malformed(format!(
                "the {what} of release {} is {} bytes, over the limit of {max_len}",
                release.to_hex(),
                value.len()
            )));
        }
        out.push((release, value.to_vec()));
    }
    Ok(out)
}

/// Checks a keyed tree at open; the error says what is wrong.
pub(super) fn validate(
    tree: &sled::Tree,
    what: &str,
    max_count: usize,
    max_len: u64,
) -> Result<(), String> {
    match read(tree, what, max_count, max_len) {
        Ok(_) => Ok(()),
        Err(ReadFail::Malformed(detail)) => Err(detail),
        Err(ReadFail::Db(e)) => Err(format!("its {what}s cannot be read: {e}")),
    }
}
