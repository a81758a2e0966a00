//! Live handles. A `samrt_model *` or `samrt_embedding *` is the address of an `Arc` held in
//! a registry; each call looks its handle up and holds its own clone while it runs.
//!
//! So a freed, foreign or already-freed pointer returns -1 instead of reading freed memory,
//! and a free on one thread while another thread still predicts with the same model only
//! drops the registry's reference: the model goes when the last call using it returns.

use crate::error::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The handles of one type, by address.
pub struct Registry<T> {
    what: &'static str,
    live: Mutex<Option<HashMap<usize, Arc<T>>>>,
}

impl<T> Registry<T> {
    pub const fn new(what: &'static str) -> Self {
        Registry {
            what,
            live: Mutex::new(None),
        }
    }

    /// The map, also after a panic elsewhere poisoned the lock: every operation on it is a
    /// single insert, lookup or remove, so it is never left half-changed.
    fn map(&self) -> MutexGuard<'_, Option<HashMap<usize, Arc<T>>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `value` and returns its handle.
    pub fn insert(&self, value: T) -> *mut T {
        let value = Arc::new(value);
        let ptr = Arc::as_ptr(&value) as *mut T;
        self.map()
            .get_or_insert_with(HashMap::new)
            .insert(ptr as usize, value);
        ptr
    }

    /// The live value behind `ptr`; an error for NULL or a pointer that is not a live handle.
    pub fn get(&self, ptr: *const T, name: &str) -> Result<Arc<T>> {
        if ptr.is_null() {
            return Err(format!("{name} is NULL"));
        }
        self.map()
            .as_ref()
            .and_then(|m| m.get(&(ptr as usize)).cloned())
            .ok_or_else(|| {
                format!(
                    "{name} is not a live {}: it was freed already, or did not come from samrt",
                    self.what
                )
            })
    }

    /// Unregisters `ptr` (NULL: nothing to do); the value is dropped here unless a call on
    /// another thread still holds it, outside the lock either way.
    pub fn remove(&self, ptr: *const T) -> Result<()> {
        if ptr.is_null() {
            return Ok(());
        }
        let removed = self.map().as_mut().and_then(|m| m.remove(&(ptr as usize)));
        match removed {
            Some(value) => {
                drop(value);
                Ok(())
            }
            None => Err(format!(
                "not a live {}: it was freed already, or did not come from samrt",
                self.what
            )),
        }
    }
}
