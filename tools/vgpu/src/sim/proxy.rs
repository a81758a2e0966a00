//! The async-proxy check: shared memory written through the generic proxy (ordinary
//! stores, atomics, `cp.async` completions, anything that goes through
//! [`Shadow::write`]) and then read through the async proxy (the tensor cores of `wgmma`,
//! bulk copies out of shared memory) needs a `fence.proxy.async` executed by the writing
//! thread after its write, and that fence ordered before the read — by program order in the
//! same warp, or by a barrier or other synchronisation (the race checker's vector clocks).
//! Without the fence the async proxy may read stale data even though a barrier orders the
//! threads; the PTX memory model leaves the two proxies unordered.
//!
//! State per shared word: the tick of the last generic write and its thread. Per thread:
//! its fences as (tick, the warp's epoch at the fence). A read is legal when the writer's
//! first fence after the write exists and the reader is ordered after it. The state is kept
//! only while enabled ([`Shadow::track_async_proxy`]), so kernels without async-proxy reads
//! pay one branch per shared write.

use super::check::Shadow;

#[derive(Default)]
pub struct AsyncProxy {
    on: bool,
    tick: u32,
    /// Per shared word: (tick of the last generic write, 0 if none; writing thread).
    words: Vec<(u32, u32)>,
    /// Per thread of the block: its fences, oldest first.
    fences: Vec<Vec<(u32, u32)>>,
}

impl AsyncProxy {
    /// Records a generic-proxy write of `[off, off+len)` by thread `tid`.
    #[inline]
    pub fn generic_write(&mut self, off: usize, len: usize, tid: u32) {
        if !self.on || len == 0 {
            return;
        }
        self.tick += 1;
        let end = (off + len).div_ceil(4).min(self.words.len());
        for w in &mut self.words[off / 4..end] {
            *w = (self.tick, tid);
        }
    }
}

impl Shadow {
    /// Turns the async-proxy bookkeeping on or off for the block just reset to `len` shared
    /// bytes and `threads` threads.
    pub fn track_async_proxy(&mut self, on: bool, len: usize, threads: usize) {
        let p = &mut self.proxy;
        p.on = on;
        p.tick = 0;
        p.words.clear();
        if on {
            p.words.resize(len.div_ceil(4), (0, 0));
            p.fences.resize_with(threads.max(p.fences.len()), Vec::new);
            p.fences.iter_mut().for_each(Vec::clear);
        }
    }

    /// Bytes just written through the async proxy (a TMA or bulk load landing in shared
    /// memory): [`Shadow::write`] recorded them as a generic-proxy write, which they are
    /// not, so a later async-proxy read of them needs no fence. [`Shadow::async_write`]
    /// calls it after that `write`.
    pub fn async_proxy_write(&mut self, off: usize, len: usize) {
        let p = &mut self.proxy;
        let end = (off + len).div_ceil(4).min(p.words.len());
        for w in p.words.iter_mut().take(end).skip(off / 4) {
            *w = (0, 0);
        }
    }

    /// `fence.proxy.async` by thread `tid` of warp `warp`.
    pub fn proxy_fence(&mut self, tid: u32, warp: u32) {
        let epoch = self.epoch_of(warp);
        let p = &mut self.proxy;
        if !p.on {
            return;
        }
        p.tick += 1;
        if let Some(f) = p.fences.get_mut(tid as usize) {
            f.push((p.tick, epoch));
        }
    }

    /// An async-proxy read of `[off, off+len)` on behalf of warp `reader`: every generic
    /// write to those bytes must have been followed by a `fence.proxy.async` of its writer
    /// that `reader` is ordered after. Call it with the ordinary race check
    /// ([`Shadow::read`]), which orders the write itself. TMA stores out of shared memory
    /// would read through the same proxy; vgpu's bulk copies only load into it.
    pub fn async_proxy_read(&self, off: usize, len: usize, reader: u32) -> Result<(), String> {
        let p = &self.proxy;
        if !p.on {
            return Ok(());
        }
        let end = (off + len).div_ceil(4).min(p.words.len());
        let mut last = (0, u32::MAX);
        for (k, &(t, tid)) in p.words[off / 4..end].iter().enumerate() {
            if t == 0 || (t, tid) == last {
                continue;
            }
            let byte = off / 4 * 4 + 4 * k;
            let fences = p.fences.get(tid as usize).map_or(&[][..], |f| &f[..]);
            let first = fences.partition_point(|&(ft, _)| ft < t);
            let writer = tid / 32;
            match fences.get(first) {
                None => {
                    return Err(format!(
                        "shared word {byte:#x} was written by thread {tid} through the generic \
                         proxy (st.shared, atom, cp.async) and is read through the async proxy \
                         with no fence.proxy.async by the writer in between (proxycheck)"
                    ))
                }
                Some(&(_, epoch)) if writer != reader && !self.knows(reader, writer, epoch) => {
                    return Err(format!(
                        "shared word {byte:#x} was written by thread {tid}, whose \
                         fence.proxy.async is not ordered before this async-proxy read by a \
                         barrier: the fence must come after the write and before the barrier \
                         (proxycheck)"
                    ))
                }
                Some(_) => last = (t, tid),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{Shadow, StoreKind, Who};

    fn write(s: &mut Shadow, off: usize, tid: u32, seq: u32) {
        let who = Who {
            tid,
            warp: tid / 32,
            seq,
        };
        s.write(off, 16, who, StoreKind::default()).unwrap();
    }

    /// A block-wide barrier among warps 0 and 1.
    fn barrier(s: &mut Shadow) {
        let mut c = s.release(0);
        for (x, y) in c.iter_mut().zip(&s.release(1)) {
            *x = (*x).max(*y);
        }
        s.acquire(0, &c);
        s.acquire(1, &c);
    }

    #[test]
    fn fence_before_the_barrier_orders_the_write_for_the_async_proxy() {
        let mut s = Shadow::default();
        s.reset(256, 2);
        s.track_async_proxy(true, 256, 64);
        write(&mut s, 0, 33, 1);
        // No fence at all.
        let e = s.async_proxy_read(0, 16, 0).unwrap_err();
        assert!(e.contains("no fence.proxy.async"), "{e}");
        // Fence after the barrier: not ordered for another warp, fine for its own.
        barrier(&mut s);
        s.proxy_fence(33, 1);
        let e = s.async_proxy_read(0, 16, 0).unwrap_err();
        assert!(e.contains("not ordered"), "{e}");
        s.async_proxy_read(0, 16, 1).unwrap();
        // A fence, then a barrier: ordered.
        write(&mut s, 32, 40, 2);
        s.proxy_fence(40, 1);
        barrier(&mut s);
        s.async_proxy_read(32, 16, 0).unwrap();
        // Bytes never written by the generic proxy need nothing, nor bytes an async-proxy
        // write (TMA) landed in.
        s.async_proxy_read(64, 16, 0).unwrap();
        write(&mut s, 96, 1, 3);
        s.async_proxy_write(96, 16);
        s.async_proxy_read(96, 16, 1).unwrap();
    }

    #[test]
    fn off_means_no_bookkeeping() {
        let mut s = Shadow::default();
        s.reset(64, 1);
        s.track_async_proxy(false, 64, 32);
        write(&mut s, 0, 1, 1);
        s.async_proxy_read(0, 16, 0).unwrap();
    }
}
