//! Buffers: what a schedule's nodes read and write, and how long they must live.

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
    /// Lives outside the arena, in device memory the caller owns and binds (an image
    /// embedding kept on the device for many decoder runs); the planner gives it no offset.
    External,
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
