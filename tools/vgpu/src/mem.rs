//! Device global memory: identity-mapped host allocations and the table of live ones.
//!
//! A device pointer is the host address of its allocation, so a generic pointer works
//! wherever a kernel passes one, and loads/stores are plain host accesses once the checker
//! has found the address inside a live allocation.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

/// cudaMalloc returns 256-byte aligned pointers; kernels rely on it for vector accesses.
pub const ALLOC_ALIGN: usize = 256;

/// Fresh allocations are filled with this byte, never zeros: real device memory holds stale
/// data, and a kernel that relies on zeroed memory must fail here too.
pub const FRESH_FILL: u8 = 0xA5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub len: u64,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// The live allocations of the device. Lookups during a launch go through a sorted
/// [`Snapshot`], taken once per launch (no allocation can change while a kernel runs,
/// because the simulator executes launches synchronously).
#[derive(Default)]
pub struct GlobalMem {
    live: RwLock<BTreeMap<u64, u64>>,
    /// Bytes currently allocated (for cuMemGetInfo).
    used: Mutex<u64>,
}

impl GlobalMem {
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates `bytes` (at least 1) aligned to [`ALLOC_ALIGN`], filled with [`FRESH_FILL`].
    /// `None` when the host cannot provide the memory (reported as out of memory).
    pub fn alloc(&self, bytes: u64) -> Option<u64> {
        let size = usize::try_from(bytes.max(1)).ok()?;
        let layout = Layout::from_size_align(size, ALLOC_ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return None;
        }
        // SAFETY: p points to `size` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(p, FRESH_FILL, size) };
        let addr = p as u64;
        self.live.write().ok()?.insert(addr, size as u64);
        *self.used.lock().ok()? += size as u64;
        Some(addr)
    }

    /// Registers memory the simulator owns elsewhere (module globals) so kernels may access it.
    pub fn register(&self, addr: u64, len: u64) {
        if let Ok(mut m) = self.live.write() {
            m.insert(addr, len);
        }
    }

    pub fn unregister(&self, addr: u64) {
        if let Ok(mut m) = self.live.write() {
            m.remove(&addr);
        }
    }

    /// Frees an allocation made by [`GlobalMem::alloc`]; false when `addr` is not the start of
    /// a live allocation (double free, interior pointer).
    pub fn free(&self, addr: u64) -> bool {
        let len = match self.live.write() {
            Ok(mut m) => match m.remove(&addr) {
                Some(len) => len,
                None => return false,
            },
            Err(_) => return false,
        };
        if let Ok(mut u) = self.used.lock() {
            *u = u.saturating_sub(len);
        }
        let layout = Layout::from_size_align(len as usize, ALLOC_ALIGN)
            .expect("layout was valid at allocation");
        // SAFETY: addr/len are exactly what `alloc` returned and registered.
        unsafe { dealloc(addr as *mut u8, layout) };
        true
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.lock().map(|u| *u).unwrap_or(0)
    }

    /// The live allocation containing `[addr, addr+len)`, if any.
    pub fn find(&self, addr: u64, len: u64) -> Option<Range> {
        let m = self.live.read().ok()?;
        let (&start, &alen) = m.range(..=addr).next_back()?;
        let r = Range { start, len: alen };
        (addr.checked_add(len)? <= r.end()).then_some(r)
    }

    /// Number of live allocations (tests count allocations in steady state).
    pub fn live_count(&self) -> usize {
        self.live.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> Snapshot {
        let ranges = self
            .live
            .read()
            .map(|m| {
                m.iter()
                    .map(|(&start, &len)| Range { start, len })
                    .collect()
            })
            .unwrap_or_default();
        Snapshot { ranges }
    }
}

/// Sorted, immutable copy of the live allocations for one launch.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    ranges: Vec<Range>,
}

impl Snapshot {
    /// Whether `[addr, addr+len)` lies inside one live allocation.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.start <= addr);
        if i == 0 {
            return false;
        }
        let r = self.ranges[i - 1];
        addr.checked_add(len).is_some_and(|e| e <= r.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_find_free() {
        let g = GlobalMem::new();
        let a = g.alloc(1000).unwrap();
        assert_eq!(a % ALLOC_ALIGN as u64, 0);
        assert!(g.find(a + 999, 1).is_some());
        assert!(g.find(a + 999, 2).is_none());
        let s = g.snapshot();
        assert!(s.contains(a, 1000));
        assert!(!s.contains(a + 1, 1000));
        assert!(!s.contains(a.wrapping_sub(1), 1));
        assert!(g.free(a));
        assert!(!g.free(a));
        assert_eq!(g.used_bytes(), 0);
    }
}
