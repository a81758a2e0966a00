//! CUDA backend. `runtime/` opens the device, loads the embedded PTX and holds weights and
//! views; `ops/` has one launcher file per kernel family (`kernels/<op>.cu`); `model/` holds
//! the schedules of SAM's modules and their fp16 numerics; `profile/` times kernels (CUDA
//! events, or an H100 model over vgpu's counters). Only `model/` and `profile/` are
//! host-only and compile without the `cuda` feature (planning needs no device: `samrt info
//! --graph`; the timing model is plain arithmetic).

pub mod model;
#[cfg(feature = "cuda")]
pub mod ops;
pub mod profile;
#[cfg(feature = "cuda")]
pub mod runtime;

#[cfg(feature = "cuda")]
pub use runtime::context::{
    cuda_available, embedded_kernels, DeviceInfo, GpuContext, CUDA_ARCH_VAR,
};

/// `samrt::cuda::<op>`, `encoder`, `encoder_exec`, `view` and `weights` paths of earlier
/// releases.
#[doc(hidden)]
pub use model::encoder;
#[cfg(feature = "cuda")]
#[doc(hidden)]
pub use {model::encoder_exec, ops::*, runtime::view, runtime::weights};
