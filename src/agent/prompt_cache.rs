//! The KV caches of recent generations, kept so that the next prompt that
//! starts the same way (the system prompt and schema of a database, when
//! only the question changes) skips the prefill of what they share. A small
//! LRU keyed by (adapter, prompt prefix): requests that interleave several
//! databases and adapters each find their own prefix.

use std::sync::Mutex;

use crate::generate::{KeptCache, LlamaSession};
use crate::model::Llama;

/// Caches kept by default.
pub const DEFAULT_PROMPT_CACHES: usize = 4;

/// The kept caches, most recently used first.
#[derive(Debug)]
pub struct PromptCache {
    entries: Mutex<Vec<KeptCache>>,
    capacity: std::sync::atomic::AtomicUsize,
}

impl PromptCache {
    /// A cache that keeps at most `capacity` entries (0: keep none).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            capacity: capacity.into(),
        }
    }

    /// Entries kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes how many entries are kept (0 drops them all).
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        self.lock().truncate(capacity);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A session for `prompt` with `adapter`: it starts from the kept cache
    /// of that adapter that shares the longest start with `prompt` (at
    /// least a quarter of what the entry holds), which
    /// is taken out while the session runs (two generations never share
    /// one); from an empty cache when none shares anything.
    pub fn checkout<'m>(
        &self,
        model: &'m Llama,
        adapter: Option<usize>,
        prompt: &[u32],
    ) -> LlamaSession<'m> {
        let mut entries = self.lock();
        let best = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.adapter() == adapter)
            .map(|(i, e)| (i, shared_prefix(e.ids(), prompt)))
            // An entry that shares only a little (the chat template's
            // header, with another database's prompt) is left for its own
            // prompt: reusing it would save a few tokens and lose the rest.
            .filter(|&(i, shared)| shared > 0 && shared * 4 >= entries[i].ids().len())
            .max_by_key(|&(_, shared)| shared);
        match best {
            Some((i, _)) => LlamaSession::from_kept(model, adapter, entries.remove(i)),
            None => LlamaSession::with_adapter(model, adapter),
        }
    }

    /// Keeps `session`'s cache as the most recent entry. An older entry of
    /// the same adapter that holds mostly the same start (the same
    /// database's prompt) is dropped for it; the least recently used go
    /// beyond the capacity.
    pub fn checkin(&self, session: LlamaSession<'_>) {
        let capacity = self.capacity();
        if capacity == 0 {
            return;
        }
        let kept = session.keep();
        if kept.ids().is_empty() {
            return;
        }
        let mut entries = self.lock();
        entries.retain(|e| {
            let shorter = e.ids().len().min(kept.ids().len());
            e.adapter() != kept.adapter() || shared_prefix(e.ids(), kept.ids()) * 10 < shorter * 9
        });
        entries.insert(0, kept);
        entries.truncate(capacity);
    }

    /// Drops every entry (their keys and values no longer hold, e.g. after
    /// an adapter was merged into the weights).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<KeptCache>> {
        // Entries are only ever moved in and out whole: a panic elsewhere
        // while holding the lock leaves nothing half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many leading ids `a` and `b` share.
fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
