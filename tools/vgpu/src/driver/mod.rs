//! The CUDA driver API, C ABI: what cudarc (and any other client) finds in `libcuda.so`.
//!
//! One device (ordinal 0, reported as a Hopper-class sm_90 part), one primary context, and
//! synchronous execution: each call does its work on the calling thread before it returns,
//! except work issued to a capturing stream, which is recorded into a graph and replayed by
//! cuGraphLaunch. The exported functions are also plain Rust functions of this crate's rlib,
//! so tests call them directly.
//!
//! Implemented (the symbols cudarc 0.19.10's safe API reaches, and their close relatives):
//!
//! - init, errors: cuInit, cuDriverGetVersion (13000), cuGetErrorString, cuGetErrorName
//! - device: cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute,
//!   cuDeviceTotalMem_v2, cuDeviceComputeCapability, cuDeviceGetUuid(_v2), cuDeviceGetPCIBusId,
//!   cuDeviceCanAccessPeer, cuDeviceGetDefaultMemPool, cuDeviceGetMemPool, cuDeviceSetMemPool
//! - primary context: cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease_v2,
//!   cuDevicePrimaryCtxReset_v2, cuDevicePrimaryCtxGetState, cuDevicePrimaryCtxSetFlags_v2
//! - context: cuCtxGetCurrent, cuCtxSetCurrent, cuCtxPushCurrent_v2, cuCtxPopCurrent_v2,
//!   cuCtxGetDevice(_v2), cuCtxSynchronize(_v2), cuCtxGetFlags, cuCtxSetFlags, cuCtxGetLimit,
//!   cuCtxSetLimit, cuCtxGetCacheConfig, cuCtxSetCacheConfig, cuCtxGetStreamPriorityRange,
//!   cuCtxGetApiVersion, cuCtxGetId
//! - memory: cuMemAlloc_v2, cuMemFree_v2, cuMemAllocAsync, cuMemFreeAsync,
//!   cuMemAllocFromPoolAsync, cuMemPoolGetAttribute, cuMemPoolSetAttribute, cuMemPoolTrimTo,
//!   cuMemGetInfo_v2, cuMemcpy, cuMemcpyAsync, cuMemcpy{HtoD,DtoH,DtoD}_v2,
//!   cuMemcpy{HtoD,DtoH,DtoD}Async_v2, cuMemcpyPeer(Async), cuMemsetD{8,16,32}_v2,
//!   cuMemsetD{8,16,32}Async, cuMemHostAlloc, cuMemAllocHost_v2, cuMemFreeHost,
//!   cuMemHostRegister(_v2), cuMemHostUnregister, cuMemHostGetDevicePointer_v2,
//!   cuMemHostGetFlags, cuMemGetAddressRange_v2, cuPointerGetAttribute
//! - streams, events: cuStreamCreate, cuStreamCreateWithPriority, cuStreamDestroy_v2,
//!   cuStreamSynchronize, cuStreamQuery, cuStreamWaitEvent, cuStreamGetFlags,
//!   cuStreamGetPriority, cuStreamGetId, cuStreamGetCtx(_v2), cuStreamGetDevice,
//!   cuLaunchHostFunc(_v2), cuEventCreate, cuEventDestroy_v2, cuEventRecord,
//!   cuEventRecordWithFlags, cuEventQuery, cuEventSynchronize, cuEventElapsedTime(_v2)
//! - capture, graphs: cuStreamBeginCapture_v2, cuStreamEndCapture, cuStreamIsCapturing,
//!   cuStreamGetCaptureInfo_v2/_v3, cuThreadExchangeStreamCaptureMode,
//!   cuGraphInstantiateWithFlags, cuGraphLaunch, cuGraphUpload, cuGraphExecGetFlags,
//!   cuGraphExecDestroy, cuGraphDestroy, cuGraphGetNodes, cuGraphNodeGetType
//! - modules, launches: cuModuleLoadData, cuModuleLoadDataEx, cuModuleLoad, cuModuleUnload,
//!   cuModuleGetFunction, cuModuleGetFunctionCount, cuModuleEnumerateFunctions,
//!   cuModuleGetGlobal_v2, cuModuleGetLoadingMode, cuFuncGetAttribute, cuFuncSetAttribute,
//!   cuFuncSetCacheConfig, cuFuncGetName, cuFuncGetModule, cuFuncGetParamInfo, cuFuncIsLoaded,
//!   cuFuncLoad, cuLaunchKernel, cuLaunchKernelEx, cuLaunchCooperativeKernel
//! - tensor maps: cuTensorMapEncodeTiled (tiled mode; see `sim::tensor_map`)
//! - vgpu: `vgpu_allocation_count` (see [`allocation_count`])
//!
//! Every other name cudarc declares is a stub returning CUDA_ERROR_NOT_SUPPORTED
//! ([`NOT_SUPPORTED`]), so no cudarc call can panic with "Missing symbol".
//!
//! Nothing unwinds across the C boundary: every body runs under `catch_unwind` (a panic is
//! CUDA_ERROR_UNKNOWN). Library state lives in statics that need no destructor, so the
//! library survives dlopen/dlclose/dlopen (build.rs links it `-z nodelete`).

// The exported names are the C API's; their safety contract is the CUDA driver API's.
#![allow(non_snake_case, clippy::missing_safety_doc)]

mod capture;
mod context;
mod error;
mod graph;
mod memory;
mod module;
mod state;
mod stream;
mod tensor_map;
mod unsupported;

pub use capture::*;
pub use context::*;
pub use error::*;
pub use graph::*;
pub use memory::*;
pub use module::*;
pub use state::{allocation_count, global_mem, set_sticky_error, vgpu_allocation_count};
pub use stream::*;
pub use tensor_map::*;
pub use unsupported::*;

/// The entry points with a real implementation (the rest of cudarc's names are in
/// [`NOT_SUPPORTED`]).
pub const IMPLEMENTED: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuGetErrorString",
    "cuGetErrorName",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDeviceComputeCapability",
    "cuDeviceGetUuid",
    "cuDeviceGetUuid_v2",
    "cuDeviceGetPCIBusId",
    "cuDeviceCanAccessPeer",
    "cuDeviceGetDefaultMemPool",
    "cuDeviceGetMemPool",
    "cuDeviceSetMemPool",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuDevicePrimaryCtxReset_v2",
    "cuDevicePrimaryCtxGetState",
    "cuDevicePrimaryCtxSetFlags_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuCtxGetDevice",
    "cuCtxGetDevice_v2",
    "cuCtxSynchronize",
    "cuCtxSynchronize_v2",
    "cuCtxGetFlags",
    "cuCtxSetFlags",
    "cuCtxGetLimit",
    "cuCtxSetLimit",
    "cuCtxGetCacheConfig",
    "cuCtxSetCacheConfig",
    "cuCtxGetStreamPriorityRange",
    "cuCtxGetApiVersion",
    "cuCtxGetId",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuMemAllocFromPoolAsync",
    "cuMemPoolGetAttribute",
    "cuMemPoolSetAttribute",
    "cuMemPoolTrimTo",
    "cuMemGetInfo_v2",
    "cuMemcpy",
    "cuMemcpyAsync",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemcpyDtoD_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemcpyPeer",
    "cuMemcpyPeerAsync",
    "cuMemsetD8_v2",
    "cuMemsetD16_v2",
    "cuMemsetD32_v2",
    "cuMemsetD8Async",
    "cuMemsetD16Async",
    "cuMemsetD32Async",
    "cuMemHostAlloc",
    "cuMemAllocHost_v2",
    "cuMemFreeHost",
    "cuMemHostRegister",
    "cuMemHostRegister_v2",
    "cuMemHostUnregister",
    "cuMemHostGetDevicePointer_v2",
    "cuMemHostGetFlags",
    "cuMemGetAddressRange_v2",
    "cuPointerGetAttribute",
    "cuStreamCreate",
    "cuStreamCreateWithPriority",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamQuery",
    "cuStreamWaitEvent",
    "cuStreamGetFlags",
    "cuStreamGetPriority",
    "cuStreamGetId",
    "cuStreamGetCtx",
    "cuStreamGetCtx_v2",
    "cuStreamGetDevice",
    "cuLaunchHostFunc",
    "cuLaunchHostFunc_v2",
    "cuEventCreate",
    "cuEventDestroy_v2",
    "cuEventRecord",
    "cuEventRecordWithFlags",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventElapsedTime",
    "cuEventElapsedTime_v2",
    "cuStreamBeginCapture_v2",
    "cuStreamEndCapture",
    "cuStreamIsCapturing",
    "cuStreamGetCaptureInfo_v2",
    "cuStreamGetCaptureInfo_v3",
    "cuThreadExchangeStreamCaptureMode",
    "cuGraphInstantiateWithFlags",
    "cuGraphLaunch",
    "cuGraphUpload",
    "cuGraphExecGetFlags",
    "cuGraphExecDestroy",
    "cuGraphDestroy",
    "cuGraphGetNodes",
    "cuGraphNodeGetType",
    "cuModuleLoadData",
    "cuModuleLoadDataEx",
    "cuModuleLoad",
    "cuModuleUnload",
    "cuModuleGetFunction",
    "cuModuleGetFunctionCount",
    "cuModuleEnumerateFunctions",
    "cuModuleGetGlobal_v2",
    "cuModuleGetLoadingMode",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuFuncSetCacheConfig",
    "cuFuncGetName",
    "cuFuncGetModule",
    "cuFuncGetParamInfo",
    "cuFuncIsLoaded",
    "cuFuncLoad",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cuLaunchCooperativeKernel",
    "cuTensorMapEncodeTiled",
];
