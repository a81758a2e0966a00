//! Weights as graph inputs, host side: the tensors a schedule reads, converted to their
//! device dtype, and the layout of the one block they are uploaded into. Planning needs only
//! this (sizes), so `samrt info --graph` can report the weight bytes without a device.

use crate::graph::buffer::DType;
use crate::{Error, Result};

/// Every tensor starts on this boundary (16-byte vector loads, cp.async).
pub const ALIGN: usize = 256;

/// A tensor ready for upload.
pub struct HostTensor {
    pub name: String,
    pub dtype: DType,
    /// Little-endian element bytes (fp16 bit patterns for F16).
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// fp16 storage for the device. A finite value beyond fp16's range would become
    /// infinity only on the GPU (the CPU backend computes in f32), so it is refused here,
    /// naming the tensor, instead of surfacing later as a non-finite embedding.
    pub fn f16(name: impl Into<String>, v: &[f32]) -> Result<Self> {
        let name = name.into();
        let mut bytes = Vec::with_capacity(v.len() * 2);
        for (i, &x) in v.iter().enumerate() {
            let h = half::f16::from_f32(x);
            if h.is_infinite() && x.is_finite() {
                return Err(Error::Unsupported(format!(
                    "tensor `{name}`: value {x} at index {i} is outside fp16's range (max \
                     65504), in which the CUDA encoder stores its weights; use the CPU \
                     backend for this checkpoint"
                )));
            }
            bytes.extend_from_slice(&h.to_bits().to_le_bytes());
        }
        Ok(HostTensor {
            name,
            dtype: DType::F16,
            bytes,
        })
    }

    pub fn f32(name: impl Into<String>, v: &[f32]) -> Self {
        HostTensor {
            name: name.into(),
            dtype: DType::F32,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Size of the one device block holding `tensors` (each aligned), as `upload` lays it out.
pub fn block_bytes(tensors: &[HostTensor]) -> usize {
    tensors
        .iter()
        .fold(0, |end, t| end.div_ceil(ALIGN) * ALIGN + t.bytes.len())
}

/// Index of a weight in a graph's [`WeightTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub usize);

/// One weight a graph reads: its official (or derived, e.g. `...qkv.bias.scaled`) tensor
/// name, device dtype and element count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightRef {
    pub name: String,
    pub dtype: DType,
    pub len: usize,
}

/// The weights of a graph, each registered once by the schedule builder. The executor
/// resolves every id to a device address when it binds the schedule, so running a node is
/// an index, not a name lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightTable {
    pub entries: Vec<WeightRef>,
}

impl WeightTable {
    /// The id of `name`, registering it on first use; a second use must agree on dtype and
    /// length (a schedule bug otherwise).
    pub fn id(&mut self, name: impl Into<String>, dtype: DType, len: usize) -> WeightId {
        let name = name.into();
        if let Some(k) = self.entries.iter().position(|e| e.name == name) {
            let e = &self.entries[k];
            assert!(
                e.dtype == dtype && e.len == len,
                "weight {name} registered as {:?}[{}] and as {dtype:?}[{len}]",
                e.dtype,
                e.len
            );
            return WeightId(k);
        }
        self.entries.push(WeightRef { name, dtype, len });
        WeightId(self.entries.len() - 1)
    }

    /// Checks every registered weight against the tensors that will be uploaded (name,
    /// dtype, length): a mismatch is a schedule bug, caught before anything runs.
    pub fn check(&self, tensors: &[HostTensor]) -> Result<()> {
        for e in &self.entries {
            let t = tensors.iter().find(|t| t.name == e.name).ok_or_else(|| {
                Error::MissingTensor(format!("{} (read by the schedule)", e.name))
            })?;
            let len = t.bytes.len() / t.dtype.size();
            if t.dtype != e.dtype || len != e.len {
                return Err(Error::Unsupported(format!(
                    "schedule reads {} as {:?}[{}], prepared as {:?}[{len}]",
                    e.name, e.dtype, e.len, t.dtype
                )));
            }
        }
        Ok(())
    }
}
