//! Model weights on the device: fp16 matrices (and fp32 norms/biases) copied from the host
//! once per process into ONE allocation, shared by every inference context on the device.
//!
//! One block instead of hundreds of small buffers: one allocation to fail cleanly on
//! out-of-memory, one copy, and stable addresses for captured CUDA graphs.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr};

use super::view::DevView;
use super::{guarded, GpuContext};
use crate::graph::DType;
use crate::{Error, Result};

/// Every tensor starts on this boundary (16-byte vector loads, cp.async).
const ALIGN: usize = 256;

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

#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: usize,
    len: usize,
    dtype: DType,
}

pub struct DeviceWeights {
    block: CudaSlice<u8>,
    entries: HashMap<String, Entry>,
    base: u64,
}

impl DeviceWeights {
    pub fn upload(gpu: &GpuContext, tensors: &[HostTensor]) -> Result<Arc<Self>> {
        let mut entries = HashMap::new();
        let mut total = 0usize;
        for t in tensors {
            let offset = total.div_ceil(ALIGN) * ALIGN;
            let len = t.bytes.len() / t.dtype.size();
            if entries
                .insert(
                    t.name.clone(),
                    Entry {
                        offset,
                        len,
                        dtype: t.dtype,
                    },
                )
                .is_some()
            {
                return Err(Error::Cuda(format!("weight {} uploaded twice", t.name)));
            }
            total = offset + t.bytes.len();
        }
        let mut host = vec![0u8; total.max(1)];
        for t in tensors {
            let e = entries[&t.name];
            host[e.offset..e.offset + t.bytes.len()].copy_from_slice(&t.bytes);
        }
        let stream = gpu.stream();
        let block = guarded("uploading the weights to the device", || {
            stream.clone_htod(&host)
        })?;
        gpu.synchronize(stream)?;
        let base = {
            let (p, _g) = block.device_ptr(stream);
            p
        };
        Ok(Arc::new(DeviceWeights {
            block,
            entries,
            base,
        }))
    }

    /// Bytes of device memory the weights occupy.
    pub fn bytes(&self) -> usize {
        self.block.len()
    }

    fn entry(&self, name: &str, dtype: DType) -> Result<Entry> {
        match self.entries.get(name) {
            Some(e) if e.dtype == dtype => Ok(*e),
            Some(e) => Err(Error::Cuda(format!(
                "device weight {name} is {:?}, not {dtype:?}",
                e.dtype
            ))),
            None => Err(Error::MissingTensor(format!("{name} (device weights)"))),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn f16(&self, gpu: &GpuContext, name: &str) -> Result<DevView<u16>> {
        let e = self.entry(name, DType::F16)?;
        // SAFETY: the entry lies inside `block`, which lives as long as `self`; callers keep
        // the weights alive (Arc) for as long as any launch or graph uses them.
        Ok(unsafe { DevView::new(self.base + e.offset as u64, e.len, gpu.stream()) })
    }

    pub fn f32(&self, gpu: &GpuContext, name: &str) -> Result<DevView<f32>> {
        let e = self.entry(name, DType::F32)?;
        // SAFETY: as in `f16`.
        Ok(unsafe { DevView::new(self.base + e.offset as u64, e.len, gpu.stream()) })
    }
}
