//! Shared-memory shadow state: the racecheck / initcheck / cp.async-wait checks.
//!
//! Ordering between warps is tracked with vector clocks, so that a barrier orders exactly
//! the warps that took part in it (a named `bar.sync 1, 64` says nothing about the warps
//! that were not there). Each warp's accesses carry its *epoch*, the number of the last
//! release it made; `clocks[x][r] > e` says that warp `x` has synchronised with a release
//! of warp `r` made after epoch `e`, i.e. `r`'s accesses of epoch `e` happen before `x`'s.
//! Barriers join the clocks of the warps that arrive; strong accesses (`.volatile`,
//! `.relaxed`, `.acquire`, `.release`, atomics) release at a store and acquire at a load of
//! the same word, which orders the message-passing pattern, and never race with each other.
//!
//! Per shared byte we keep the last writer (thread, epoch, instruction) and the set of
//! warps that read it since (with the largest of their epochs: a write must be ordered
//! after that epoch of each reader, which is exact for block-wide barriers and
//! conservative for mixed named barriers). Within a warp, instructions execute in program
//! order, so only lanes of one instruction writing different values to one byte are a
//! hazard there. Bytes targeted by a cp.async whose group has not been waited for are
//! "pending": reading them is the missing-wait bug. Bytes written by a bulk copy (TMA) have
//! the async proxy as their writer, an extra clock entry that only the completion of the
//! copy's mbarrier phase releases, and are unreadable until that phase completes.
//!
//! The state is kept per 4-byte word while every access has covered whole words, which is
//! what nearly all accesses do; the bytes of such a word have had identical histories, so
//! one state stands for all four. The first access that covers part of a word splits it
//! into four byte states for the rest of the block, so sub-word accesses are judged byte by
//! byte exactly as before.

use std::collections::HashMap;

/// Warps per block (1024 threads).
pub const MAX_WARPS: usize = 32;

/// What a warp knows of every warp's releases.
pub type Clock = [u32; CLOCK_LEN];

/// Clock entries: one per warp, and one for the async proxy, the bulk-copy engine, whose
/// writes are published only by the completion of their mbarrier phase.
pub const CLOCK_LEN: usize = MAX_WARPS + 1;
/// The async proxy's clock entry, and the thread number its writes carry.
pub const PROXY: u32 = MAX_WARPS as u32;
const PROXY_TID: u16 = (MAX_WARPS * 32) as u16;

/// An empty clock.
pub const ZERO_CLOCK: Clock = [0; CLOCK_LEN];

const NONE: u16 = u16::MAX;
const WRITTEN: u8 = 1;
const PENDING: u8 = 2;
/// The last write was a strong one.
const W_STRONG: u8 = 4;
/// Some read in the reader set was weak.
const R_WEAK: u8 = 8;
/// A word whose bytes have their own states (in [`Cells::split`]).
const SPLIT: u8 = 16;
/// Written by a bulk copy (TMA) whose mbarrier phase has not completed.
const ASYNC: u8 = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Byte {
    writer: u16,
    flags: u8,
    readers: u32,
    w_epoch: u32,
    r_epoch: u32,
    w_seq: u32,
}

const FRESH: Byte = Byte {
    writer: NONE,
    flags: 0,
    readers: 0,
    w_epoch: 0,
    r_epoch: 0,
    w_seq: 0,
};

/// Shadow states: one per 4-byte word, or four for a split word.
#[derive(Default)]
struct Cells {
    words: Vec<Byte>,
    split: HashMap<usize, [Byte; 4]>,
}

impl Cells {
    /// Calls `f` with the state of each part of `[off, off+len)` and the first byte offset
    /// it stands for: whole words unsplit, bytes of words that are split or that the range
    /// covers only in part (which splits them).
    #[inline(always)]
    fn for_each(
        &mut self,
        off: usize,
        len: usize,
        mut f: impl FnMut(&mut Byte, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        let end = off + len;
        if off.is_multiple_of(4) && len.is_multiple_of(4) {
            let words = &mut self.words[off / 4..end / 4];
            if words.iter().all(|c| c.flags & SPLIT == 0) {
                for (j, c) in words.iter_mut().enumerate() {
                    f(c, off + 4 * j)?;
                }
                return Ok(());
            }
        }
        for w in off / 4..end.div_ceil(4) {
            let (lo, hi) = ((w * 4).max(off), (w * 4 + 4).min(end));
            let cell = &mut self.words[w];
            if cell.flags & SPLIT == 0 {
                if hi - lo == 4 {
                    f(cell, lo)?;
                    continue;
                }
                cell.flags |= SPLIT;
                let mut one = *cell;
                one.flags &= !SPLIT;
                self.split.insert(w, [one; 4]);
            }
            let bytes = self
                .split
                .get_mut(&w)
                .expect("a split word has byte states");
            for k in lo..hi {
                f(&mut bytes[k - w * 4], k)?;
            }
        }
        Ok(())
    }

    /// The state of byte `k`.
    fn byte(&self, k: usize) -> Byte {
        let cell = self.words[k / 4];
        if cell.flags & SPLIT == 0 {
            cell
        } else {
            self.split[&(k / 4)][k % 4]
        }
    }
}

pub struct Shadow {
    bytes: Cells,
    clocks: Vec<Clock>,
    epoch: Clock,
    releases: u32,
    /// Clock released into each word by strong stores and atomics, keyed by address
    /// (global) or `SHARED_KEY | offset`.
    released: HashMap<u64, Clock>,
    /// Generic-proxy writes and `fence.proxy.async` (see `proxy`).
    pub(crate) proxy: super::proxy::AsyncProxy,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow {
            bytes: Cells::default(),
            clocks: vec![ZERO_CLOCK; CLOCK_LEN],
            epoch: ZERO_CLOCK,
            releases: 0,
            released: HashMap::new(),
            proxy: Default::default(),
        }
    }
}

/// Key bit of shared-memory words in the release table (host addresses are below 2^57).
pub const SHARED_KEY: u64 = 1 << 63;

/// Who is accessing: thread index in the block, its warp, the warp's dynamic instruction
/// number.
#[derive(Clone, Copy, Debug)]
pub struct Who {
    pub tid: u32,
    pub warp: u32,
    pub seq: u32,
}

/// How a store relates to the race checker.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreKind {
    /// `.volatile`/`.relaxed`/`.release` or an atomic.
    pub strong: bool,
    /// The bytes equal what memory already holds (lanes of one instruction storing the
    /// same value to one word do not race).
    pub same_value: bool,
}

impl Shadow {
    /// A fresh block of `len` shared bytes and `warps` warps.
    pub fn reset(&mut self, len: usize, warps: usize) {
        self.bytes.words.clear();
        self.bytes.words.resize(len.div_ceil(4), FRESH);
        if !self.bytes.split.is_empty() {
            self.bytes.split.clear();
        }
        for c in &mut self.clocks[..warps.min(MAX_WARPS)] {
            *c = ZERO_CLOCK;
        }
        self.clocks[PROXY as usize] = ZERO_CLOCK;
        self.epoch = ZERO_CLOCK;
        self.releases = 0;
        if !self.released.is_empty() {
            self.released.clear();
        }
    }

    /// Starts a new epoch of `warp` and returns the clock that publishes its accesses so far.
    pub fn release(&mut self, warp: u32) -> Clock {
        self.releases += 1;
        let w = warp as usize;
        self.epoch[w] = self.releases;
        self.clocks[w][w] = self.releases;
        self.clocks[w]
    }

    /// The epoch of `warp`'s current accesses.
    pub(crate) fn epoch_of(&self, warp: u32) -> u32 {
        self.epoch[warp as usize]
    }

    /// Whether `reader` is ordered after the accesses warp `writer` made in `epoch`.
    pub(crate) fn knows(&self, reader: u32, writer: u32, epoch: u32) -> bool {
        self.clocks[reader as usize][writer as usize] > epoch
    }

    /// `warp` has synchronised with whatever published `c`.
    pub fn acquire(&mut self, warp: u32, c: &Clock) {
        join(&mut self.clocks[warp as usize], c);
    }

    /// A strong store or atomic of `warp` to word `key`: later strong loads of it acquire.
    pub fn release_at(&mut self, key: u64, warp: u32) {
        let c = self.release(warp);
        join(self.released.entry(key).or_insert(ZERO_CLOCK), &c);
    }

    /// A strong load or atomic of `warp` from word `key`.
    pub fn acquire_at(&mut self, key: u64, warp: u32) {
        if let Some(c) = self.released.get(&key) {
            join(&mut self.clocks[warp as usize], c);
        }
    }

    pub fn read(&mut self, off: usize, len: usize, who: Who, strong: bool) -> Result<(), String> {
        let me = 1u32 << who.warp;
        let epoch = self.epoch[who.warp as usize];
        let clock = &self.clocks[who.warp as usize];
        let weak = if strong { 0 } else { R_WEAK };
        // The bytes of one access mostly share their writer: check each writer once.
        let mut checked = (NONE, 0u32);
        // Reader-set update of the previous byte: (state before, state after).
        let mut memo = ((u32::MAX, 0u32, 0u8), (0u32, 0u32, 0u8));
        self.bytes.for_each(off, len, |b, k| {
            if b.flags & (PENDING | ASYNC | WRITTEN) != WRITTEN {
                return Err(unreadable(b.flags, k));
            }
            if b.writer != NONE && (b.writer, b.w_epoch) != checked {
                let ww = b.writer as u32 / 32;
                if ww != who.warp && clock[ww as usize] <= b.w_epoch {
                    if !(strong && b.flags & W_STRONG != 0) {
                        return Err(race("RAW", k, b.writer as u32, who.tid));
                    }
                } else {
                    checked = (b.writer, b.w_epoch);
                }
            }
            let before = (b.readers, b.r_epoch, b.flags & R_WEAK);
            if before != memo.0 {
                let others = b.readers & !me;
                memo = if others == 0 || ordered_all(clock, others, b.r_epoch) {
                    (before, (me, epoch, weak))
                } else {
                    let e = b.r_epoch.max(epoch);
                    (before, (b.readers | me, e, before.2 | weak))
                };
            }
            (b.readers, b.r_epoch) = (memo.1 .0, memo.1 .1);
            b.flags = (b.flags & !R_WEAK) | memo.1 .2;
            Ok(())
        })
    }

    pub fn write(
        &mut self,
        off: usize,
        len: usize,
        who: Who,
        kind: StoreKind,
    ) -> Result<(), String> {
        let me = 1u32 << who.warp;
        let epoch = self.epoch[who.warp as usize];
        let clock = &self.clocks[who.warp as usize];
        let strong = if kind.strong { W_STRONG } else { 0 };
        // The reader set last found ordered before this write (bytes of one access share it).
        let mut readers_ok = (0u32, 0u32);
        self.bytes.for_each(off, len, |b, k| {
            if b.flags & ASYNC != 0 {
                return Err(format!(
                    "write to shared byte {k:#x} while a bulk copy (cp.async.bulk) is still \
                     writing it (its mbarrier phase has not completed)"
                ));
            }
            if b.writer != NONE && b.writer as u32 != who.tid {
                let ww = b.writer as u32 / 32;
                let race = if ww != who.warp {
                    let both_strong = kind.strong && b.flags & W_STRONG != 0;
                    !both_strong && clock[ww as usize] <= b.w_epoch
                } else {
                    b.w_seq == who.seq && !kind.same_value
                };
                if race {
                    return Err(self::race("WAW", k, b.writer as u32, who.tid));
                }
            }
            let others = b.readers & !me;
            let all_strong = kind.strong && b.flags & R_WEAK == 0;
            if others != 0
                && !all_strong
                && (others, b.r_epoch) != readers_ok
                && !ordered_all(clock, others, b.r_epoch)
            {
                return Err(self::race("WAR", k, u32::MAX, who.tid));
            }
            readers_ok = (others, b.r_epoch);
            *b = Byte {
                writer: who.tid as u16,
                flags: (b.flags & (PENDING | ASYNC | SPLIT)) | WRITTEN | strong,
                readers: 0,
                w_epoch: epoch,
                r_epoch: 0,
                w_seq: who.seq,
            };
            Ok(())
        })?;
        self.proxy.generic_write(off, len, who.tid);
        Ok(())
    }

    /// Atomics: a strong read and write; they never race with each other. Their target
    /// must have been written before (`memory::resolve_atomic` refuses it otherwise, with
    /// the atomic named in the message, before this runs).
    pub fn atomic(&mut self, off: usize, len: usize, who: Who) -> Result<(), String> {
        self.read(off, len, who, true)?;
        // Lanes of one atomic instruction are serialised: as harmless as equal stores.
        let kind = StoreKind {
            strong: true,
            same_value: true,
        };
        self.write(off, len, who, kind)
    }

    /// The first byte of `[off, off+len)` never written in this block (initcheck for
    /// atomics, which read without taking part in the race bookkeeping of [`Shadow::read`]).
    pub fn first_unwritten(&self, off: usize, len: usize) -> Option<usize> {
        (off..off + len).find(|&k| self.bytes.byte(k).flags & WRITTEN == 0)
    }

    /// A bulk copy (the async proxy) issued by `who` writes `[off, off+len)`: it must not
    /// overwrite bytes that other warps read or wrote without being ordered before the
    /// issuing thread, nor bytes another bulk copy is still writing. The writer becomes
    /// the async proxy at its current epoch, which only the completion of the copy's
    /// mbarrier phase publishes (`release(PROXY)`), so a thread must have waited on that
    /// phase to read the bytes; until the phase completes they are unreadable to everyone
    /// ([`Shadow::async_done`] ends that). The async proxy wrote them, so a later
    /// async-proxy read (wgmma) needs no `fence.proxy.async` for them (`sim::proxy`).
    pub fn async_write(&mut self, off: usize, len: usize, who: Who) -> Result<(), String> {
        self.bytes.for_each(off, len, |b, k| {
            if b.flags & ASYNC != 0 {
                return Err(format!(
                    "bulk copy into shared byte {k:#x}, which an earlier bulk copy is still \
                     writing (its mbarrier phase has not completed)"
                ));
            }
            Ok(())
        })?;
        self.write(off, len, who, StoreKind::default())?;
        let epoch = self.epoch[PROXY as usize];
        self.bytes.for_each(off, len, |b, _| {
            b.writer = PROXY_TID;
            b.w_epoch = epoch;
            b.w_seq = 0;
            b.flags |= ASYNC;
            Ok(())
        })?;
        self.async_proxy_write(off, len);
        Ok(())
    }

    /// The mbarrier phase of a bulk copy has completed: its bytes may be read.
    pub fn async_done(&mut self, off: usize, len: usize) {
        let r = self.bytes.for_each(off, len, |b, _| {
            b.flags &= !ASYNC;
            Ok(())
        });
        debug_assert!(r.is_ok(), "clearing flags cannot fail");
    }

    pub fn set_pending(&mut self, off: usize, len: usize, pending: bool) {
        let r = self.bytes.for_each(off, len, |b, _| {
            if pending {
                b.flags |= PENDING;
            } else {
                b.flags &= !PENDING;
            }
            Ok(())
        });
        debug_assert!(r.is_ok(), "setting flags cannot fail");
    }
}

/// The message for a read of a byte that is pending or was never written.
#[cold]
#[inline(never)]
fn unreadable(flags: u8, k: usize) -> String {
    if flags & ASYNC != 0 {
        format!(
            "read of shared byte {k:#x} written by a bulk copy (cp.async.bulk) whose mbarrier \
             phase has not completed (missing mbarrier wait before the read)"
        )
    } else if flags & PENDING != 0 {
        format!(
            "read of shared byte {k:#x} whose cp.async has not completed (missing \
             cp.async.wait_group before the read)"
        )
    } else {
        format!("read of uninitialised shared memory at {k:#x} (never written in this block)")
    }
}

/// The message for a race of `kind` at byte `k` between `first` (`u32::MAX`: a reader of
/// another warp) and thread `tid`.
#[cold]
#[inline(never)]
fn race(kind: &str, k: usize, first: u32, tid: u32) -> String {
    if first == PROXY_TID as u32 {
        return format!(
            "shared byte {k:#x} written by a bulk copy (cp.async.bulk) and accessed ({kind}) by \
             thread {tid} without an mbarrier wait that observed the copy's phase complete \
             (missing mbarrier wait before the read)"
        );
    }
    let what = match kind {
        "RAW" => format!("written by thread {first} and read by thread {tid}"),
        "WAW" => format!("written by threads {first} and {tid}"),
        _ => format!("read by another warp and written by thread {tid}"),
    };
    format!("shared-memory race ({kind}) at {k:#x}: {what} with no barrier between")
}

/// Whether a warp with clock `clock` is ordered after epoch `e` of every warp in `warps`.
fn ordered_all(clock: &Clock, mut warps: u32, e: u32) -> bool {
    while warps != 0 {
        let r = warps.trailing_zeros() as usize;
        warps &= warps - 1;
        if clock[r] <= e {
            return false;
        }
    }
    true
}

fn join(a: &mut Clock, b: &Clock) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = (*x).max(*y);
    }
}

/// The shared-memory addresses of one warp access as (lane, byte address), at most one per
/// lane: a fixed array, because every shared access of the hot loop builds one.
#[derive(Clone, Copy, Default)]
pub struct LaneAddrs {
    items: [(u32, u32); 32],
    len: usize,
}

impl LaneAddrs {
    #[inline]
    pub fn push(&mut self, lane: u32, addr: u32) {
        self.items[self.len] = (lane, addr);
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.items[..self.len]
    }
}

/// Shared-memory wavefronts a warp access needs beyond the ideal, with 32 banks of 4 bytes.
/// Accesses wider than 4 bytes are split into phases of 128 bytes (16 lanes of 8 bytes,
/// 8 lanes of 16 bytes), as the hardware does; lanes reading the same word broadcast.
pub fn bank_conflicts(addrs: &[(u32, u32)], bytes_per_lane: u32) -> u64 {
    if addrs.is_empty() {
        return 0;
    }
    let lanes_per_phase = (128 / bytes_per_lane.clamp(4, 16)) as usize;
    let mut extra = 0u64;
    for phase in addrs.chunks(lanes_per_phase) {
        let mut words: [[u32; 8]; 32] = [[u32::MAX; 8]; 32];
        let mut counts = [0usize; 32];
        let mut worst = 1usize;
        for &(_, addr) in phase {
            let nwords = bytes_per_lane.div_ceil(4).max(1);
            for w in 0..nwords {
                let word = addr / 4 + w;
                let bank = (word % 32) as usize;
                let seen = &mut words[bank];
                if !seen[..counts[bank].min(8)].contains(&word) {
                    if counts[bank] < 8 {
                        seen[counts[bank]] = word;
                    }
                    counts[bank] += 1;
                    worst = worst.max(counts[bank]);
                }
            }
        }
        extra += (worst - 1) as u64;
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEAK: StoreKind = StoreKind {
        strong: false,
        same_value: false,
    };

    fn who(tid: u32, seq: u32) -> Who {
        Who {
            tid,
            warp: tid / 32,
            seq,
        }
    }

    /// A block-wide barrier among `warps`.
    fn barrier(s: &mut Shadow, warps: &[u32]) {
        let mut c = ZERO_CLOCK;
        for &w in warps {
            join(&mut c, &s.release(w));
        }
        for &w in warps {
            s.acquire(w, &c);
        }
    }

    #[test]
    fn raw_across_warps_without_barrier_is_a_race() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        s.write(0, 4, who(0, 1), WEAK).unwrap();
        assert!(s.read(0, 4, who(40, 1), false).unwrap_err().contains("RAW"));
        // After a barrier the same read is fine.
        barrier(&mut s, &[0, 1]);
        s.read(0, 4, who(40, 2), false).unwrap();
    }

    #[test]
    fn same_warp_program_order_is_not_a_race_but_same_instruction_waw_is() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        s.write(0, 4, who(0, 1), WEAK).unwrap();
        s.read(0, 4, who(1, 2), false).unwrap();
        s.write(8, 4, who(2, 3), WEAK).unwrap();
        let same = StoreKind {
            strong: false,
            same_value: true,
        };
        s.write(8, 4, who(3, 3), same).unwrap();
        assert!(s.write(8, 4, who(4, 3), WEAK).unwrap_err().contains("WAW"));
    }

    #[test]
    fn war_and_uninitialised_and_pending() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        assert!(s
            .read(16, 4, who(0, 1), false)
            .unwrap_err()
            .contains("uninitialised"));
        s.write(0, 4, who(0, 1), WEAK).unwrap();
        barrier(&mut s, &[0, 1]);
        s.read(0, 4, who(0, 2), false).unwrap();
        assert!(s.write(0, 4, who(33, 1), WEAK).unwrap_err().contains("WAR"));
        s.set_pending(32, 16, true);
        assert!(s
            .read(32, 4, who(0, 5), false)
            .unwrap_err()
            .contains("cp.async"));
    }

    #[test]
    fn a_barrier_orders_only_the_warps_that_took_part() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        s.write(0, 4, who(0, 1), WEAK).unwrap();
        barrier(&mut s, &[0, 1]);
        s.read(0, 4, who(32, 1), false).unwrap();
        assert!(s.read(0, 4, who(64, 1), false).unwrap_err().contains("RAW"));
        // Transitively: warp 2 meets warp 1 after warp 1 met warp 0.
        barrier(&mut s, &[1, 2]);
        s.read(0, 4, who(64, 2), false).unwrap();
    }

    #[test]
    fn strong_accesses_pass_messages() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        let strong = StoreKind {
            strong: true,
            same_value: false,
        };
        s.write(0, 4, who(0, 1), strong).unwrap();
        barrier(&mut s, &[0, 1]);
        // Producer: data, then the flag; consumer: the flag (no race), then the data.
        s.write(16, 4, who(0, 2), WEAK).unwrap();
        s.write(0, 4, who(0, 3), strong).unwrap();
        s.release_at(SHARED_KEY, 0);
        s.read(0, 4, who(32, 1), true).unwrap();
        assert!(s.read(0, 4, who(33, 2), false).unwrap_err().contains("RAW"));
        s.acquire_at(SHARED_KEY, 1);
        s.read(16, 4, who(32, 3), false).unwrap();
    }

    /// Sub-word accesses split a word's state: halves written by two warps do not race,
    /// a word read whole after only half of it was written is uninitialised, and a split
    /// word is judged byte by byte from then on.
    #[test]
    fn sub_word_accesses_are_judged_per_byte() {
        let mut s = Shadow::default();
        s.reset(64, 3);
        s.write(0, 2, who(0, 1), WEAK).unwrap();
        s.write(2, 2, who(32, 1), WEAK).unwrap();
        barrier(&mut s, &[0, 1, 2]);
        s.read(0, 4, who(64, 2), false).unwrap();
        s.write(8, 2, who(0, 2), WEAK).unwrap();
        assert!(s
            .read(8, 4, who(0, 3), false)
            .unwrap_err()
            .contains("uninitialised shared memory at 0xa"));
        // A whole-word write over a split word, then a cross-warp half read without a
        // barrier: the race is still seen.
        s.write(16, 2, who(0, 4), WEAK).unwrap();
        s.write(16, 4, who(1, 5), WEAK).unwrap();
        let e = s.read(18, 2, who(40, 3), false).unwrap_err();
        assert!(e.contains("(RAW) at 0x12"), "{e}");
        // Whole-word state: a 16-byte read after a 16-byte write across warps races at
        // the first byte.
        s.write(32, 16, who(2, 6), WEAK).unwrap();
        assert!(s
            .read(32, 16, who(70, 4), false)
            .unwrap_err()
            .contains("(RAW) at 0x20"));
        assert_eq!(s.first_unwritten(8, 4), Some(10));
        assert_eq!(s.first_unwritten(32, 16), None);
    }

    #[test]
    fn bank_conflict_counts() {
        // 32 lanes, consecutive words: conflict free.
        let a: Vec<(u32, u32)> = (0..32).map(|l| (l, l * 4)).collect();
        assert_eq!(bank_conflicts(&a, 4), 0);
        // Stride of 32 words: every lane hits bank 0 with a distinct word: 31 extra.
        let a: Vec<(u32, u32)> = (0..32).map(|l| (l, l * 128)).collect();
        assert_eq!(bank_conflicts(&a, 4), 31);
        // Broadcast: all lanes read one word.
        let a: Vec<(u32, u32)> = (0..32).map(|l| (l, 64)).collect();
        assert_eq!(bank_conflicts(&a, 4), 0);
        // 16-byte accesses, consecutive: 4 phases, no conflict.
        let a: Vec<(u32, u32)> = (0..32).map(|l| (l, l * 16)).collect();
        assert_eq!(bank_conflicts(&a, 16), 0);
        // 16-byte rows with a 128-byte stride (unswizzled 64-half rows): 8 lanes per phase
        // all on banks 0-3: 7 extra wavefronts per phase.
        let a: Vec<(u32, u32)> = (0..32).map(|l| (l, l * 128)).collect();
        assert_eq!(bank_conflicts(&a, 16), 28);
    }
}
