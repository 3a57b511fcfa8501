//! Forgetting a release the engine retired (`Output::Forget`): its chunks that
//! no other stored chunk list names, its rollout record, its staged artifact
//! and, last, its chunk list. Removing the list last is what makes a forget cut
//! short by a crash safe to redo: the list is still there at the next start,
//! the engine finds it names a release trusted metadata no longer lists, and
//! asks for the forget again. Each chunk goes record first, then file (the
//! store's rule), so no record ever names a missing file.

use super::{
    DiscardError, HeldError, ListsError, RemoveError, RemoveListError, RemoveRolloutError, Store,
};
use std::collections::HashSet;
use thiserror::Error;
use waveguard_protocol::chunk::{ChunkHash, ChunkList};
use waveguard_protocol::ReleaseId;

/// What forgetting a release removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Chunks removed.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Chunks of the release kept because another stored chunk list names them.
    pub shared: usize,
}

/// Forgetting a release stopped part-way; what was removed stays removed, and
/// the chunk list (removed last) is still stored, so the next start redoes it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ForgetError {
    /// The stored chunk lists could not be read.
    #[error(transparent)]
    Lists(#[from] ListsError),
    /// A chunk record could not be read.
    #[error(transparent)]
    Held(#[from] HeldError),
    /// A chunk could not be removed.
    #[error(transparent)]
    Chunk(#[from] RemoveError),
    /// The rollout record could not be removed.
    #[error(transparent)]
    Rollout(#[from] RemoveRolloutError),
    /// The staged artifact could not be removed.
    #[error(transparent)]
    Staged(#[from] DiscardError),
    /// The chunk list could not be removed.
    #[error(transparent)]
    List(#[from] RemoveListError),
}

impl Store {
    /// Removes what is stored for `release` (see the module docs). A release with
    /// nothing stored is a no-op. When another stored list cannot be read, no chunk is
    /// removed (which ones it needs is unknown); the rest is.
    pub fn forget_release(&self, release: &ReleaseId) -> Result<Forgotten, ForgetError> {
        let mut mine: Vec<ChunkHash> = Vec::new();
        let mut needed: HashSet<ChunkHash> = HashSet::new();
        let mut unknown_needs = false;
        for (id, data) in self.chunk_lists()? {
            match ChunkList::decode(&data) {
                Ok(list) if id == *release => mine = list.chunks.iter().map(|c| c.hash).collect(),
                Ok(list) => needed.extend(list.chunks.iter().map(|c| c.hash)),
                // Our own list unreadable: nothing to go by; the list itself still goes.
                Err(_) if id == *release => {}
                Err(e) => {
                    tracing::warn!(%id, %e, "a stored chunk list is unreadable: keeping every chunk");
                    unknown_needs = true;
                }
            }
        }
        let mut done = Forgotten::default();
        let mut seen: HashSet<ChunkHash> = HashSet::new();
        for hash in mine {
            if !seen.insert(hash) {
                continue; // a chunk may repeat within one list
            }
            if unknown_needs || needed.contains(&hash) {
                done.shared += 1;
                continue;
            }
            let Some(len) = self.chunk_len(&hash)? else {
                continue; // never fetched, or already removed by an earlier attempt
            };
            self.remove_chunk(&hash)?;
            done.chunks += 1;
            done.bytes += u64::from(len);
        }
        self.remove_rollout(release)?;
        self.discard_staged(release)?;
        self.remove_chunk_list(release)?;
        Ok(done)
    }

    /// The recorded length of a held chunk, `None` if it is not held.
    fn chunk_len(&self, hash: &ChunkHash) -> Result<Option<u32>, HeldError> {
        self.meta.chunk_len(hash).map_err(|source| HeldError::Db {
            path: self.meta.path.clone(),
            source,
        })
    }
}
