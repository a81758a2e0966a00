//! A plan in words, for `samrt info --graph`: the nodes in execution order, every buffer's
//! lifetime and arena offset, and the memory totals. Host-only, so any machine can show
//! what a GPU would run.

use std::fmt::Write;

use crate::graph::buffer::{BufId, Role};
use crate::graph::ops::OpDesc;
use crate::graph::planner::{lifetimes, Plan};
use crate::graph::schedule::Graph;

/// The text of `graph` planned as `plan`, with `weight_bytes` for the uploaded block.
pub fn describe<O: OpDesc>(graph: &Graph<O>, plan: &Plan, weight_bytes: usize) -> String {
    let mut s = String::new();
    let names = |ids: &[BufId]| {
        ids.iter()
            .map(|b| graph.buffers[b.0].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "nodes: {}", graph.nodes.len());
    let _ = writeln!(
        s,
        "{:>4}  {:<20} {:<26} {:<24} reads -> writes",
        "#", "op", "entry point", "label"
    );
    for (i, n) in graph.nodes.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4}  {:<20} {:<26} {:<24} {} -> {}",
            i,
            n.op.name(),
            n.op.entry_point(),
            n.label,
            names(&n.reads),
            names(&n.writes)
        );
    }
    let life = lifetimes(graph);
    // First and last node touching each buffer (external ones included, which the arena's
    // lifetimes leave out).
    let mut used: Vec<Option<(usize, usize)>> = vec![None; graph.buffers.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for b in n.reads.iter().chain(&n.writes) {
            let u = used[b.0].get_or_insert((i, i));
            u.1 = i;
        }
    }
    let _ = writeln!(s, "buffers: {}", graph.buffers.len());
    let _ = writeln!(
        s,
        "{:>4}  {:<20} {:<5} {:>12} {:>6} {:>6} {:>12}",
        "#", "name", "dtype", "bytes", "first", "last", "offset"
    );
    for (i, b) in graph.buffers.iter().enumerate() {
        let span = if b.role == Role::External {
            used[i]
        } else {
            life[i]
        };
        let (first, last) = match span {
            Some((a, z)) => (a.to_string(), z.to_string()),
            None => ("-".into(), "-".into()),
        };
        let offset = match b.role {
            Role::External => "external".to_string(),
            _ if life[i].is_none() => "-".to_string(),
            _ => plan.offsets[i].to_string(),
        };
        let _ = writeln!(
            s,
            "{:>4}  {:<20} {:<5} {:>12} {:>6} {:>6} {:>12}",
            i,
            b.name,
            format!("{:?}", b.dtype).to_lowercase(),
            b.bytes(),
            first,
            last,
            offset
        );
    }
    let _ = writeln!(
        s,
        "weights: {} tensors, {} bytes",
        graph.weights.entries.len(),
        weight_bytes
    );
    let _ = writeln!(s, "arena: {} bytes", plan.arena_bytes);
    let _ = writeln!(s, "peak: {} bytes", weight_bytes + plan.arena_bytes);
    s
}
