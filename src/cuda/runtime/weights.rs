//! Model weights on the device: fp16 matrices (and fp32 norms/biases) copied from the host
//! once per process into ONE allocation, shared by every inference context on the device.
//!
//! One block instead of hundreds of small buffers: one allocation to fail cleanly on
//! out-of-memory, one copy, and stable addresses for captured CUDA graphs.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr};

use super::context::{guarded, GpuContext};
use super::view::DevView;
use crate::graph::weights::{HostTensor, ALIGN};
use crate::graph::DType;
use crate::{Error, Result};

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

    /// Device address of `name`, checked to hold `len` elements of `dtype`: how a schedule's
    /// weight ids are resolved, once, when it is bound.
    pub fn address(&self, name: &str, dtype: DType, len: usize) -> Result<u64> {
        let e = self.entry(name, dtype)?;
        if e.len != len {
            return Err(Error::Cuda(format!(
                "device weight {name} holds {} elements, the schedule reads {len}",
                e.len
            )));
        }
        Ok(self.base + e.offset as u64)
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
