//! Device tensors that outlive one run: an image embedding kept on the device between the
//! encoder and any number of decoder calls. Each has an identity, so that a consumer that
//! copies it into a fixed buffer (the decoder's embedding slot, which its captured graphs
//! read) can tell whether the copy it holds is still this tensor's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::context::{guarded, GpuContext};
use super::view::DevView;
use crate::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// f32 values in device memory of one context, immutable once made.
pub struct Resident {
    id: u64,
    buf: CudaSlice<f32>,
}

impl Resident {
    /// A copy of `host` on `gpu` (one counted allocation, one host-to-device copy).
    pub fn upload(gpu: &GpuContext, host: &[f32]) -> Result<Resident> {
        let stream = gpu.stream();
        let mut buf = gpu.alloc_zeros::<f32>(stream, host.len(), "allocating an embedding")?;
        guarded("copying an embedding to the device", || {
            stream.memcpy_htod(host, &mut buf)
        })?;
        Ok(Resident::new(buf))
    }

    /// A copy of `src` (device memory of `gpu`, e.g. a slice of the encoder's arena),
    /// made on the stream without passing through the host.
    pub fn copy_of(gpu: &GpuContext, src: &DevView<f32>) -> Result<Resident> {
        use cudarc::driver::DeviceSlice;
        let stream = gpu.stream();
        let mut buf = gpu.alloc_zeros::<f32>(stream, src.len(), "allocating an embedding")?;
        guarded("copying an embedding on the device", || {
            stream.memcpy_dtod(src, &mut buf)
        })?;
        Ok(Resident::new(buf))
    }

    fn new(buf: CudaSlice<f32>) -> Resident {
        Resident {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            buf,
        }
    }

    /// Unique in the process: no two residents share one.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.buf
    }

    /// Refuses a resident of another context: its memory is not this one's to read.
    pub fn check_context(&self, gpu: &GpuContext) -> Result<()> {
        if Arc::ptr_eq(self.buf.context(), gpu.context()) {
            Ok(())
        } else {
            Err(Error::Cuda(
                "the embedding lives in another model's CUDA context; load both with one \
                 model, or pass the host embedding"
                    .into(),
            ))
        }
    }

    /// The values on the host (waits for the stream).
    pub fn download(&self, gpu: &GpuContext) -> Result<Vec<f32>> {
        gpu.download_f32(gpu.stream(), &self.buf)
    }
}
