//! The graph itself: buffers, nodes in execution order, and the weights they read.

use crate::graph::buffer::{BufId, Buffer, DType, Role};
use crate::graph::ops::OpDesc;
use crate::graph::weights::WeightTable;

#[derive(Clone, Debug)]
pub struct Node<O> {
    /// Where in the model, e.g. "blocks.3.attn.qkv".
    pub label: String,
    pub reads: Vec<BufId>,
    pub writes: Vec<BufId>,
    pub op: O,
}

#[derive(Clone, Debug)]
pub struct Graph<O> {
    pub buffers: Vec<Buffer>,
    pub nodes: Vec<Node<O>>,
    /// The weights the ops read, by [`WeightId`].
    pub weights: WeightTable,
}

impl<O> Default for Graph<O> {
    fn default() -> Self {
        Graph {
            buffers: Vec::new(),
            nodes: Vec::new(),
            weights: WeightTable::default(),
        }
    }
}

impl<O> Graph<O> {
    pub fn buffer(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        len: usize,
        role: Role,
    ) -> BufId {
        self.buffers.push(Buffer {
            name: name.into(),
            dtype,
            len,
            role,
        });
        BufId(self.buffers.len() - 1)
    }

    /// A node with explicit reads and writes (ops that describe themselves use [`Graph::add`]).
    pub fn node(&mut self, label: impl Into<String>, reads: &[BufId], writes: &[BufId], op: O) {
        self.nodes.push(Node {
            label: label.into(),
            reads: reads.to_vec(),
            writes: writes.to_vec(),
            op,
        });
    }

    pub fn get(&self, id: BufId) -> &Buffer {
        &self.buffers[id.0]
    }
}

impl<O: OpDesc> Graph<O> {
    /// Appends `op`, its reads and writes taken from the op itself.
    pub fn add(&mut self, label: impl Into<String>, op: O) {
        let (reads, writes) = (op.reads(), op.writes());
        self.node(label, &reads, &writes, op);
    }
}

/// One node's measured device time.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTime {
    pub op: &'static str,
    pub entry_point: String,
    pub label: String,
    /// Median over the iterations.
    pub median_ms: f64,
}
