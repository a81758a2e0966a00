//! Device global memory: identity-mapped host allocations, the table of live ones, guard
//! gaps between them and the record of which bytes were ever written (initcheck).
//!
//! A device pointer is the host address of its allocation, so a generic pointer works
//! wherever a kernel passes one, and loads/stores are plain host accesses once the checker
//! has found the address inside a live allocation.
//!
//! Every allocation is surrounded by [`REDZONE`] bytes that belong to no allocation, as
//! compute-sanitizer's memcheck pads them: without the gap, the host allocator may place two
//! device allocations back to back, and a read one element past the end of one would land
//! in the next, live one and be accepted.
//!
//! Each allocation made here carries an [`InitMap`], one bit per byte, set by host copies,
//! memsets and kernel stores; a kernel read of a byte whose bit is clear reads whatever the
//! memory held before (stale data on hardware, [`FRESH_FILL`] here), which compute-sanitizer's
//! initcheck reports. Registered memory (module globals, pinned host memory) is written by
//! means the simulator does not see and counts as written.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// cudaMalloc returns 256-byte aligned pointers; kernels rely on it for vector accesses.
pub const ALLOC_ALIGN: usize = 256;

/// Fresh allocations are filled with this byte, never zeros: real device memory holds stale
/// data, and a kernel that relies on zeroed memory must fail here too.
pub const FRESH_FILL: u8 = 0xA5;

/// Unowned bytes before and after every allocation (a multiple of [`ALLOC_ALIGN`]): large
/// enough that an overflow by a whole 16-byte vector per lane of a warp (512 bytes) or a tile
/// row stays inside the gap, small next to the allocations themselves.
pub const REDZONE: u64 = 1024;

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

/// Which bytes of one allocation were written: one bit per byte, atomic because blocks of a
/// launch run on several host threads.
pub struct InitMap {
    words: Box<[AtomicU64]>,
}

/// Bits `[lo, lo + n)` of a word, `n` in 1..=64.
#[inline]
fn bits(lo: u64, n: u64) -> u64 {
    (u64::MAX >> (64 - n)) << lo
}

impl InitMap {
    fn new(len: u64) -> Self {
        let n = len.div_ceil(64) as usize;
        InitMap {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Calls `f(word, mask)` for the words covering bytes `[off, off + len)`.
    #[inline]
    fn for_words(off: u64, len: u64, mut f: impl FnMut(usize, u64) -> bool) -> bool {
        let (mut at, end) = (off, off + len);
        while at < end {
            let lo = at % 64;
            let n = (64 - lo).min(end - at);
            if !f((at / 64) as usize, bits(lo, n)) {
                return false;
            }
            at += n;
        }
        true
    }

    /// Whether every byte of `[off, off + len)` was written.
    #[inline]
    pub fn written(&self, off: u64, len: u64) -> bool {
        Self::for_words(off, len, |w, m| {
            self.words[w].load(Ordering::Relaxed) & m == m
        })
    }

    /// The first byte of `[off, off + len)` never written.
    pub fn first_unwritten(&self, off: u64, len: u64) -> Option<u64> {
        (off..off + len).find(|&k| !self.written(k, 1))
    }

    /// Marks `[off, off + len)` written; a plain load first, so that rewriting memory (every
    /// launch after the first) costs no locked instruction.
    #[inline]
    pub fn mark(&self, off: u64, len: u64) {
        Self::for_words(off, len, |w, m| {
            let word = &self.words[w];
            if word.load(Ordering::Relaxed) & m != m {
                word.fetch_or(m, Ordering::Relaxed);
            }
            true
        });
    }

    /// Up to 64 bits starting at bit `off`.
    fn get(&self, off: u64, n: u64) -> u64 {
        let mut v = 0u64;
        let mut got = 0u64;
        Self::for_words(off, n, |w, m| {
            let part = (self.words[w].load(Ordering::Relaxed) & m) >> m.trailing_zeros();
            v |= part << got;
            got += m.count_ones() as u64;
            true
        });
        v
    }

    /// Sets up to 64 bits starting at bit `off` to `v`.
    fn put(&self, off: u64, n: u64, v: u64) {
        let mut used = 0u64;
        Self::for_words(off, n, |w, m| {
            let k = m.count_ones() as u64;
            let part = ((v >> used) << m.trailing_zeros()) & m;
            let word = &self.words[w];
            let old = word.load(Ordering::Relaxed);
            word.store((old & !m) | part, Ordering::Relaxed);
            used += k;
            true
        });
    }

    /// Copies the written state of `src[soff..soff+len)` to `self[off..off+len)`: a copy of
    /// bytes nobody wrote yields bytes nobody wrote.
    fn copy_from(&self, off: u64, src: &InitMap, soff: u64, len: u64) {
        let mut k = 0;
        while k < len {
            let n = (len - k).min(64);
            self.put(off + k, n, src.get(soff + k, n));
            k += n;
        }
    }
}

struct Entry {
    len: u64,
    /// `None` for registered memory, which counts as written.
    init: Option<Arc<InitMap>>,
    /// Allocated by [`GlobalMem::alloc`] (and freed by [`GlobalMem::free`]).
    owned: bool,
}

/// The host block behind an allocation of `len` bytes: the redzones around the bytes,
/// rounded up to the alignment.
fn padded_layout(len: u64) -> Option<Layout> {
    let inner = usize::try_from(len.max(1))
        .ok()?
        .checked_next_multiple_of(ALLOC_ALIGN)?;
    let total = inner.checked_add(2 * REDZONE as usize)?;
    Layout::from_size_align(total, ALLOC_ALIGN).ok()
}

/// The live allocations of the device. Lookups during a launch go through a sorted
/// [`Snapshot`], taken once per launch (no allocation can change while a kernel runs,
/// because the simulator executes launches synchronously).
#[derive(Default)]
pub struct GlobalMem {
    live: RwLock<BTreeMap<u64, Entry>>,
    /// Bytes currently allocated (for cuMemGetInfo).
    used: Mutex<u64>,
}

impl GlobalMem {
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates `bytes` (at least 1) aligned to [`ALLOC_ALIGN`], filled with [`FRESH_FILL`],
    /// never written, between two redzones. `None` when the host cannot provide the memory
    /// (reported as out of memory).
    pub fn alloc(&self, bytes: u64) -> Option<u64> {
        let size = bytes.max(1);
        let layout = padded_layout(size)?;
        // SAFETY: layout has non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return None;
        }
        // SAFETY: the block holds REDZONE + size bytes and more.
        let user = unsafe { p.add(REDZONE as usize) };
        // SAFETY: `user` points to `size` writable bytes of the block just allocated.
        unsafe { std::ptr::write_bytes(user, FRESH_FILL, size as usize) };
        let addr = user as u64;
        let entry = Entry {
            len: size,
            init: Some(Arc::new(InitMap::new(size))),
            owned: true,
        };
        self.live.write().ok()?.insert(addr, entry);
        *self.used.lock().ok()? += size;
        Some(addr)
    }

    /// Registers memory the simulator owns elsewhere (module globals) so kernels may access it.
    pub fn register(&self, addr: u64, len: u64) {
        if let Ok(mut m) = self.live.write() {
            let entry = Entry {
                len,
                init: None,
                owned: false,
            };
            m.insert(addr, entry);
        }
    }

    pub fn unregister(&self, addr: u64) {
        if let Ok(mut m) = self.live.write() {
            if m.get(&addr).is_some_and(|e| !e.owned) {
                m.remove(&addr);
            }
        }
    }

    /// Frees an allocation made by [`GlobalMem::alloc`]; false when `addr` is not the start of
    /// a live allocation (double free, interior pointer, registered memory).
    pub fn free(&self, addr: u64) -> bool {
        let len = match self.live.write() {
            Ok(mut m) => match m.get(&addr) {
                Some(e) if e.owned => {
                    let len = e.len;
                    m.remove(&addr);
                    len
                }
                _ => return false,
            },
            Err(_) => return false,
        };
        if let Ok(mut u) = self.used.lock() {
            *u = u.saturating_sub(len);
        }
        let layout = padded_layout(len).expect("layout was valid at allocation");
        // SAFETY: the block starts REDZONE before addr and has the layout `alloc` used.
        unsafe { dealloc((addr - REDZONE) as *mut u8, layout) };
        true
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.lock().map(|u| *u).unwrap_or(0)
    }

    /// The live allocation containing `[addr, addr+len)`, if any.
    pub fn find(&self, addr: u64, len: u64) -> Option<Range> {
        let m = self.live.read().ok()?;
        let (&start, e) = m.range(..=addr).next_back()?;
        let r = Range { start, len: e.len };
        (addr.checked_add(len)? <= r.end()).then_some(r)
    }

    /// The written-bytes map and offset of `[addr, addr+len)` when it lies in an allocation
    /// that has one.
    fn init_of(&self, addr: u64, len: u64) -> Option<(Arc<InitMap>, u64)> {
        let m = self.live.read().ok()?;
        let (&start, e) = m.range(..=addr).next_back()?;
        if addr.checked_add(len)? > start + e.len {
            return None;
        }
        Some((Arc::clone(e.init.as_ref()?), addr - start))
    }

    /// Records that the host wrote `[addr, addr+len)` (a copy from the host, a memset).
    /// Ranges outside every allocation are ignored: the caller validated its ranges.
    pub fn mark_written(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        if let Some((map, off)) = self.init_of(addr, len) {
            map.mark(off, len);
        }
    }

    /// Records a device-to-device copy of `len` bytes: the destination is written exactly
    /// where the source was. A host source (unified copies) counts as written.
    pub fn copy_written(&self, dst: u64, src: u64, len: u64) {
        if len == 0 {
            return;
        }
        let Some((dmap, doff)) = self.init_of(dst, len) else {
            return;
        };
        match self.init_of(src, len) {
            Some((smap, soff)) => dmap.copy_from(doff, &smap, soff, len),
            None => dmap.mark(doff, len),
        }
    }

    /// Number of live allocations (tests count allocations in steady state).
    pub fn live_count(&self) -> usize {
        self.live.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> Snapshot {
        let (ranges, init) = self
            .live
            .read()
            .map(|m| {
                m.iter()
                    .map(|(&start, e)| (Range { start, len: e.len }, e.init.clone()))
                    .unzip()
            })
            .unwrap_or_default();
        Snapshot { ranges, init }
    }
}

/// Sorted, immutable copy of the live allocations for one launch, sharing their written-byte
/// maps with the table (so kernel stores are seen by later launches and copies).
#[derive(Clone, Default)]
pub struct Snapshot {
    ranges: Vec<Range>,
    init: Vec<Option<Arc<InitMap>>>,
}

impl Snapshot {
    /// Index of the live allocation holding all of `[addr, addr+len)`.
    #[inline]
    pub fn find(&self, addr: u64, len: u64) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.start <= addr);
        if i == 0 {
            return None;
        }
        let r = self.ranges[i - 1];
        addr.checked_add(len)
            .is_some_and(|e| e <= r.end())
            .then_some(i - 1)
    }

    /// Whether `[addr, addr+len)` lies inside one live allocation.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.find(addr, len).is_some()
    }

    pub fn range(&self, i: usize) -> Range {
        self.ranges[i]
    }

    /// Whether `[addr, addr+len)` of allocation `i` (as [`Snapshot::find`] gave it) was
    /// entirely written.
    #[inline]
    pub fn written(&self, i: usize, addr: u64, len: u64) -> bool {
        match &self.init[i] {
            Some(m) => m.written(addr - self.ranges[i].start, len),
            None => true,
        }
    }

    /// The first never-written byte of `[addr, addr+len)` in allocation `i`.
    pub fn first_unwritten(&self, i: usize, addr: u64, len: u64) -> Option<u64> {
        let start = self.ranges[i].start;
        let m = self.init[i].as_ref()?;
        m.first_unwritten(addr - start, len).map(|o| start + o)
    }

    /// Marks `[addr, addr+len)` of allocation `i` written.
    #[inline]
    pub fn mark_written(&self, i: usize, addr: u64, len: u64) {
        if let Some(m) = &self.init[i] {
            m.mark(addr - self.ranges[i].start, len);
        }
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

    #[test]
    fn neighbours_are_separated_by_unowned_redzones() {
        let g = GlobalMem::new();
        let blocks: Vec<u64> = (0..64).map(|_| g.alloc(256).unwrap()).collect();
        let s = g.snapshot();
        for &a in &blocks {
            for probe in [a - REDZONE, a - 1, a + 256, a + 256 + REDZONE - 1] {
                assert!(!s.contains(probe, 1), "{probe:#x} near {a:#x} is owned");
            }
        }
        let mut sorted = blocks.clone();
        sorted.sort_unstable();
        for p in sorted.windows(2) {
            assert!(p[1] - p[0] >= 256 + 2 * REDZONE);
        }
        for a in blocks {
            assert!(g.free(a));
        }
    }

    #[test]
    fn written_bits_follow_stores_memsets_and_copies() {
        let g = GlobalMem::new();
        let a = g.alloc(300).unwrap();
        let b = g.alloc(300).unwrap();
        let s = g.snapshot();
        let (ia, ib) = (s.find(a, 1).unwrap(), s.find(b, 1).unwrap());
        assert!(!s.written(ia, a, 1));
        s.mark_written(ia, a + 60, 8);
        assert!(s.written(ia, a + 60, 8));
        assert!(!s.written(ia, a + 59, 2));
        assert_eq!(s.first_unwritten(ia, a + 60, 16), Some(a + 68));
        g.mark_written(a + 100, 150);
        assert!(s.written(ia, a + 100, 150));
        assert!(!s.written(ia, a + 99, 1) && !s.written(ia, a + 250, 1));
        // A copy carries the holes of its source.
        g.copy_written(b + 3, a + 50, 230);
        for k in 0..300u64 {
            let want = (3..233).contains(&k) && {
                let src = k - 3 + 50;
                (60..68).contains(&src) || (100..250).contains(&src)
            };
            assert_eq!(s.written(ib, b + k, 1), want, "byte {k}");
        }
        // Registered memory counts as written.
        let host = [0u8; 64];
        g.register(host.as_ptr() as u64, 64);
        let s = g.snapshot();
        let ih = s.find(host.as_ptr() as u64, 64).unwrap();
        assert!(s.written(ih, host.as_ptr() as u64, 64));
        assert!(!g.free(host.as_ptr() as u64));
        g.unregister(host.as_ptr() as u64);
        assert!(g.free(a) && g.free(b));
    }
}
