//! The embedding cache: least recently used first out, sized by bytes.

use samrt::ImageEmbedding;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A cached image embedding.
pub struct Entry {
    pub emb: ImageEmbedding,
    pub bytes: usize,
}

/// Least-recently-used by bytes. An entry that a request still holds (an `Arc`) outlives
/// its eviction; the queue limit bounds how many such requests there are.
#[derive(Default)]
pub struct Lru {
    pub map: HashMap<String, (Arc<Entry>, u64)>,
    order: BTreeMap<u64, String>,
    tick: u64,
    pub bytes: usize,
}

impl Lru {
    pub fn get(&mut self, id: &str) -> Option<Arc<Entry>> {
        let (e, t) = self.map.get_mut(id)?;
        self.order.remove(t);
        self.tick += 1;
        *t = self.tick;
        self.order.insert(self.tick, id.to_string());
        Some(e.clone())
    }

    /// Inserts within `cap` bytes; returns how many entries were evicted.
    pub fn insert(&mut self, id: String, e: Arc<Entry>, cap: usize) -> u64 {
        if e.bytes > cap || self.map.contains_key(&id) {
            return 0;
        }
        let mut evicted = 0;
        while self.bytes + e.bytes > cap {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((o, _)) = self.map.remove(&old) {
                self.bytes -= o.bytes;
                evicted += 1;
            }
        }
        self.tick += 1;
        self.bytes += e.bytes;
        self.order.insert(self.tick, id.clone());
        self.map.insert(id, (e, self.tick));
        evicted
    }
}
