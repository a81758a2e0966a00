//! Typed views into memory the caller manages (the arena, the weight block), for launchers
//! that take `&dyn DevicePtr<T>`.
//!
//! cudarc's own slices record events for cross-stream safety; the graph executor runs every
//! node on one stream in order, so its views carry no events and cost nothing to pass.

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop};

pub struct DevView<T> {
    ptr: CUdeviceptr,
    len: usize,
    stream: Arc<CudaStream>,
    _t: PhantomData<T>,
}

impl<T> DevView<T> {
    /// # Safety
    /// `[ptr, ptr + len * size_of::<T>())` must be device memory that stays allocated while
    /// the view and every launch using it are alive, and `stream` must be the stream the
    /// launches go to.
    pub unsafe fn new(ptr: CUdeviceptr, len: usize, stream: &Arc<CudaStream>) -> Self {
        DevView {
            ptr,
            len,
            stream: Arc::clone(stream),
            _t: PhantomData,
        }
    }

    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    /// The first `len` elements (all of them when `len` is larger).
    pub fn prefix(&self, len: usize) -> DevView<T> {
        self.window(0, len)
    }

    /// Elements `[start, start + len)`, clamped to the view.
    pub fn window(&self, start: usize, len: usize) -> DevView<T> {
        let start = start.min(self.len);
        DevView {
            ptr: self.ptr + (start * std::mem::size_of::<T>()) as CUdeviceptr,
            len: len.min(self.len - start),
            stream: Arc::clone(&self.stream),
            _t: PhantomData,
        }
    }
}

impl<T> DeviceSlice<T> for DevView<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T> DevicePtr<T> for DevView<T> {
    fn device_ptr<'a>(&'a self, _stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Sync(None))
    }
}

impl<T> DevicePtrMut<T> for DevView<T> {
    fn device_ptr_mut<'a>(&'a mut self, _stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Sync(None))
    }
}
