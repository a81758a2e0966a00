//! A model as a scheduled graph of named ops over buffers, planned into one arena.
//!
//! Not a framework: a [`Graph`] is a list of nodes in execution order, each naming the kernel
//! it runs and the buffers it reads and writes; [`planner::plan`] gives every buffer an
//! offset in one arena from their lifetimes, so the peak device memory is known before
//! anything runs; a backend's executor walks the nodes. The payload `O` is the backend's
//! own op description (e.g. `crate::cuda::encoder::EncOp`).

pub mod planner;

/// Index of a buffer in [`Graph::buffers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    U8,
    I32,
    F16,
    F32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// What a buffer is for; inputs and outputs live for the whole graph (the caller writes and
/// reads them around a run), intermediates only from their first write to their last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Intermediate,
    Output,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub dtype: DType,
    pub len: usize,
    pub role: Role,
}

impl Buffer {
    pub fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }
}

#[derive(Clone, Debug)]
pub struct Node<O> {
    /// The kernel (op) name, as in kernels/<op>.cu and src/cuda/<op>.rs.
    pub op_name: &'static str,
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
}

impl<O> Default for Graph<O> {
    fn default() -> Self {
        Graph {
            buffers: Vec::new(),
            nodes: Vec::new(),
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

    pub fn node(
        &mut self,
        op_name: &'static str,
        label: impl Into<String>,
        reads: &[BufId],
        writes: &[BufId],
        op: O,
    ) {
        self.nodes.push(Node {
            op_name,
            label: label.into(),
            reads: reads.to_vec(),
            writes: writes.to_vec(),
            op,
        });
    }

    pub fn get(&self, id: BufId) -> &Buffer {
        &self.buffers[id.0]
    }

    /// One line per node: `op_name label reads -> writes`.
    pub fn describe(&self) -> String {
        let names = |ids: &[BufId]| {
            ids.iter()
                .map(|b| self.buffers[b.0].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "{:<24} {:<28} {} -> {}",
                    n.op_name,
                    n.label,
                    names(&n.reads),
                    names(&n.writes)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
