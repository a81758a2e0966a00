//! Liveness-based arena planning: every buffer gets an offset in one allocation before
//! anything runs, so the peak is known up front and no kernel ever waits for an allocator.
//!
//! Buffers live from the node that first writes them to the node that last reads them
//! (inputs and outputs: the whole graph). Walking the nodes in order, a buffer is placed in
//! the smallest free gap that fits (best fit, neighbours merged on free), else at the end of
//! the arena, which grows the high-water mark. Reused space holds stale data: no kernel may
//! rely on zeroed memory.

use crate::graph::buffer::{BufId, Role};
use crate::graph::schedule::Graph;

/// Offsets are multiples of this (cudaMalloc's alignment; enough for 16-byte vector loads).
pub const ALIGN: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Byte offset of each buffer in the arena, indexed like `Graph::buffers` (0 and unused
    /// for [`Role::External`] buffers, which live outside it).
    pub offsets: Vec<usize>,
    /// Arena size: the peak of simultaneously live (aligned) buffers, with fragmentation.
    pub arena_bytes: usize,
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Live range `[first, last]` of each arena buffer in node indices (inputs and outputs: the
/// whole graph); `None` if no node touches it, and for external buffers, which are not in
/// the arena.
pub fn lifetimes<O>(g: &Graph<O>) -> Vec<Option<(usize, usize)>> {
    let n = g.nodes.len();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; g.buffers.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for b in node.reads.iter().chain(&node.writes) {
            let e = life[b.0].get_or_insert((i, i));
            e.0 = e.0.min(i);
            e.1 = e.1.max(i);
        }
    }
    for (k, buf) in g.buffers.iter().enumerate() {
        match buf.role {
            Role::Intermediate => {}
            // Bound by the caller at run time: not in the arena.
            Role::External => life[k] = None,
            Role::Input | Role::Output => life[k] = Some((0, n.saturating_sub(1))),
        }
    }
    life
}

pub fn plan<O>(g: &Graph<O>) -> Plan {
    let life = lifetimes(g);
    let mut offsets = vec![0usize; g.buffers.len()];
    // Free gaps (offset, size), sorted by offset; `end` is the arena's current size.
    let mut free: Vec<(usize, usize)> = Vec::new();
    let mut end = 0usize;
    let mut placed = vec![false; g.buffers.len()];
    // Buffers that start at node i, and those that end at node i.
    let n = g.nodes.len().max(1);
    let mut starts: Vec<Vec<BufId>> = vec![Vec::new(); n];
    let mut ends: Vec<Vec<BufId>> = vec![Vec::new(); n];
    for (k, l) in life.iter().enumerate() {
        if let Some((a, b)) = *l {
            starts[a].push(BufId(k));
            ends[b].push(BufId(k));
        }
    }
    for i in 0..n {
        // Largest first within one node keeps big tensors low and gaps reusable.
        let mut s = starts[i].clone();
        s.sort_by_key(|b| std::cmp::Reverse(g.buffers[b.0].bytes()));
        for b in s {
            let size = align(g.buffers[b.0].bytes().max(1));
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, &(_, sz))| sz >= size)
                .min_by_key(|(_, &(_, sz))| sz)
                .map(|(j, _)| j);
            let off = match best {
                Some(j) => {
                    let (o, sz) = free[j];
                    if sz == size {
                        free.remove(j);
                    } else {
                        free[j] = (o + size, sz - size);
                    }
                    o
                }
                None => {
                    // Extend the arena, swallowing a free gap that touches its end.
                    let mut o = end;
                    if let Some(&(lo, lsz)) = free.last() {
                        if lo + lsz == end {
                            free.pop();
                            o = lo;
                        }
                    }
                    end = o + size;
                    o
                }
            };
            offsets[b.0] = off;
            placed[b.0] = true;
        }
        // Buffers whose last use is node i are free for node i + 1.
        for b in &ends[i] {
            if g.buffers[b.0].role != Role::Intermediate {
                continue;
            }
            let size = align(g.buffers[b.0].bytes().max(1));
            release(&mut free, offsets[b.0], size);
        }
    }
    Plan {
        offsets,
        arena_bytes: end,
    }
}

/// Returns `[off, off+size)` to the free list, merging with neighbours.
fn release(free: &mut Vec<(usize, usize)>, off: usize, size: usize) {
    let i = free.partition_point(|&(o, _)| o < off);
    free.insert(i, (off, size));
    if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
        free[i].1 += free[i + 1].1;
        free.remove(i + 1);
    }
    if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
        free[i - 1].1 += free[i].1;
        free.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::buffer::{DType, Role};
    use crate::graph::schedule::Graph;

    /// Checks that no two buffers alive at the same node overlap, and that every buffer lies
    /// inside the arena.
    #[allow(clippy::needless_range_loop)]
    fn assert_valid(g: &Graph<()>, p: &Plan) {
        let life = lifetimes(g);
        for a in 0..g.buffers.len() {
            let (Some(la), sa) = (life[a], align(g.buffers[a].bytes().max(1))) else {
                continue;
            };
            assert!(p.offsets[a] + sa <= p.arena_bytes);
            assert_eq!(p.offsets[a] % ALIGN, 0);
            for b in a + 1..g.buffers.len() {
                let (Some(lb), sb) = (life[b], align(g.buffers[b].bytes().max(1))) else {
                    continue;
                };
                let overlap_time = la.0 <= lb.1 && lb.0 <= la.1;
                let overlap_mem =
                    p.offsets[a] < p.offsets[b] + sb && p.offsets[b] < p.offsets[a] + sa;
                assert!(
                    !(overlap_time && overlap_mem),
                    "buffers {a} and {b} overlap"
                );
            }
        }
    }

    #[test]
    fn chain_reuses_memory() {
        // x -> a -> b -> c -> y: at most two intermediates are alive at once.
        let mut g: Graph<()> = Graph::default();
        let x = g.buffer("x", DType::F32, 1000, Role::Input);
        let mut prev = x;
        for k in 0..6 {
            let t = g.buffer(format!("t{k}"), DType::F32, 1000, Role::Intermediate);
            g.node(format!("n{k}"), &[prev], &[t], ());
            prev = t;
        }
        let y = g.buffer("y", DType::F32, 1000, Role::Output);
        g.node("out", &[prev], &[y], ());
        let p = plan(&g);
        assert_valid(&g, &p);
        // input + output + two live intermediates (4096 B each after alignment).
        assert_eq!(p.arena_bytes, 4 * 4096);
    }

    #[test]
    fn random_graphs_never_overlap() {
        let mut seed = 0x1234_5678_u64;
        let mut rnd = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % m
        };
        for _ in 0..200 {
            let mut g: Graph<()> = Graph::default();
            let mut live = vec![g.buffer("in", DType::F16, 1 + rnd(5000), Role::Input)];
            for k in 0..(5 + rnd(30)) {
                let reads: Vec<BufId> = (0..1 + rnd(3)).map(|_| live[rnd(live.len())]).collect();
                let role = if rnd(10) == 0 {
                    Role::Output
                } else {
                    Role::Intermediate
                };
                let w = g.buffer(format!("b{k}"), DType::F32, 1 + rnd(20000), role);
                g.node(format!("n{k}"), &reads, &[w], ());
                live.push(w);
            }
            let p = plan(&g);
            assert_valid(&g, &p);
            let total: usize = g.buffers.iter().map(|b| align(b.bytes().max(1))).sum();
            assert!(p.arena_bytes <= total);
        }
    }
}
