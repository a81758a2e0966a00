//! Shared-memory shadow state: the racecheck / initcheck / cp.async-wait checks.
//!
//! Per shared byte we keep the last writer and the readers since the last barrier, stamped
//! with the block's barrier epoch. Two accesses to the same byte, at least one a write, in
//! the same epoch, from different warps, are a hazard (RAW, WAR or WAW). Within a warp,
//! instructions execute in program order in this simulator, so only two lanes of one
//! instruction writing the same byte count as a hazard there. Bytes targeted by a cp.async
//! whose group has not been waited for are "pending": reading them is the missing-wait bug.

const NONE: u16 = u16::MAX;
const MANY: u16 = u16::MAX - 1;

#[derive(Clone, Copy)]
struct Byte {
    writer: u16,
    reader_warp: u16,
    w_epoch: u32,
    r_epoch: u32,
    w_seq: u32,
    written: bool,
    pending: bool,
}

const FRESH: Byte = Byte {
    writer: NONE,
    reader_warp: NONE,
    w_epoch: u32::MAX,
    r_epoch: u32::MAX,
    w_seq: 0,
    written: false,
    pending: false,
};

#[derive(Default)]
pub struct Shadow {
    bytes: Vec<Byte>,
}

/// Who is accessing: thread index in the block, its warp, the warp's dynamic instruction
/// number, and the block's barrier epoch.
#[derive(Clone, Copy, Debug)]
pub struct Who {
    pub tid: u32,
    pub warp: u32,
    pub seq: u32,
    pub epoch: u32,
}

impl Shadow {
    pub fn reset(&mut self, len: usize) {
        self.bytes.clear();
        self.bytes.resize(len, FRESH);
    }

    pub fn read(&mut self, off: usize, len: usize, who: Who) -> Result<(), String> {
        for k in off..off + len {
            let b = &mut self.bytes[k];
            if b.pending {
                return Err(format!(
                    "read of shared byte {k:#x} whose cp.async has not completed \
                     (missing cp.async.wait_group before the read)"
                ));
            }
            if !b.written {
                return Err(format!(
                    "read of uninitialised shared memory at {k:#x} (never written in this block)"
                ));
            }
            if b.w_epoch == who.epoch && b.writer != NONE && b.writer as u32 / 32 != who.warp {
                return Err(format!(
                    "shared-memory race (RAW) at {k:#x}: written by thread {} and read by \
                     thread {} with no barrier between",
                    b.writer, who.tid
                ));
            }
            if b.r_epoch != who.epoch {
                b.r_epoch = who.epoch;
                b.reader_warp = who.warp as u16;
            } else if b.reader_warp != who.warp as u16 {
                b.reader_warp = MANY;
            }
        }
        Ok(())
    }

    pub fn write(&mut self, off: usize, len: usize, who: Who) -> Result<(), String> {
        for k in off..off + len {
            let b = &mut self.bytes[k];
            if b.w_epoch == who.epoch && b.writer != NONE && b.writer as u32 != who.tid {
                let other_warp = b.writer as u32 / 32 != who.warp;
                if other_warp || b.w_seq == who.seq {
                    return Err(format!(
                        "shared-memory race (WAW) at {k:#x}: written by threads {} and {} with \
                         no barrier between",
                        b.writer, who.tid
                    ));
                }
            }
            if b.r_epoch == who.epoch
                && b.reader_warp != NONE
                && (b.reader_warp == MANY || b.reader_warp as u32 != who.warp)
            {
                return Err(format!(
                    "shared-memory race (WAR) at {k:#x}: read by another warp and written by \
                     thread {} with no barrier between",
                    who.tid
                ));
            }
            b.writer = who.tid as u16;
            b.w_epoch = who.epoch;
            b.w_seq = who.seq;
            b.written = true;
        }
        Ok(())
    }

    /// Atomics: they never race with each other, but they do initialise the bytes.
    pub fn mark_written(&mut self, off: usize, len: usize, who: Who) {
        for b in &mut self.bytes[off..off + len] {
            b.written = true;
            b.writer = who.tid as u16;
            b.w_epoch = who.epoch;
            b.w_seq = who.seq;
        }
    }

    /// The first byte of `[off, off+len)` never written in this block (initcheck for
    /// atomics, which read without taking part in the race bookkeeping of [`Shadow::read`]).
    pub fn first_unwritten(&self, off: usize, len: usize) -> Option<usize> {
        (off..off + len).find(|&k| !self.bytes[k].written)
    }

    pub fn set_pending(&mut self, off: usize, len: usize, pending: bool) {
        for b in &mut self.bytes[off..off + len] {
            b.pending = pending;
        }
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

    fn who(tid: u32, seq: u32, epoch: u32) -> Who {
        Who {
            tid,
            warp: tid / 32,
            seq,
            epoch,
        }
    }

    #[test]
    fn raw_across_warps_without_barrier_is_a_race() {
        let mut s = Shadow::default();
        s.reset(64);
        s.write(0, 4, who(0, 1, 0)).unwrap();
        assert!(s.read(0, 4, who(40, 1, 0)).unwrap_err().contains("RAW"));
        // After a barrier (new epoch) the same read is fine.
        s.read(0, 4, who(40, 2, 1)).unwrap();
    }

    #[test]
    fn same_warp_program_order_is_not_a_race_but_same_instruction_waw_is() {
        let mut s = Shadow::default();
        s.reset(64);
        s.write(0, 4, who(0, 1, 0)).unwrap();
        s.read(0, 4, who(1, 2, 0)).unwrap();
        s.write(8, 4, who(2, 3, 0)).unwrap();
        assert!(s.write(8, 4, who(3, 3, 0)).unwrap_err().contains("WAW"));
    }

    #[test]
    fn war_and_uninitialised_and_pending() {
        let mut s = Shadow::default();
        s.reset(64);
        assert!(s
            .read(16, 4, who(0, 1, 0))
            .unwrap_err()
            .contains("uninitialised"));
        s.write(0, 4, who(0, 1, 0)).unwrap();
        s.read(0, 4, who(0, 2, 1)).unwrap();
        assert!(s.write(0, 4, who(33, 1, 1)).unwrap_err().contains("WAR"));
        s.set_pending(32, 16, true);
        assert!(s
            .read(32, 4, who(0, 5, 1))
            .unwrap_err()
            .contains("cp.async"));
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
