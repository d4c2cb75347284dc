//! The plugin side's table of streams the other side is reading: streamed
//! route answers, pulled by the host one piece at a time (plugin API 1.2).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::{BodyStream, PluginError};

/// A stream is taken out of its slot while a piece is read, so no lock is held
/// across an await; a cancel that arrives meanwhile removes the slot, and the
/// reader then drops the stream instead of putting it back.
#[derive(Default)]
pub(crate) struct Streams {
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Option<BodyStream>>>,
}

impl Streams {
    /// Keeps `body` under a new id.
    pub(crate) fn insert(&self, body: BodyStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, Some(body));
        id
    }

    /// The next piece of stream `id`; `None` at its end (or when it is unknown
    /// or already being read), after which it is forgotten.
    pub(crate) async fn next(&self, id: u64) -> Option<Result<Vec<u8>, PluginError>> {
        let mut body = self.lock().get_mut(&id).and_then(Option::take)?;
        let piece = body.next().await;
        let mut slots = self.lock();
        match (&piece, slots.get_mut(&id)) {
            (Some(Ok(_)), Some(slot)) => *slot = Some(body),
            _ => {
                slots.remove(&id);
            }
        }
        piece
    }

    /// Forgets stream `id`, dropping it (and what its producer holds) now or,
    /// when a piece is being read, right after.
    pub(crate) fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<BodyStream>>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
