//! The simulator proper: PTX modules lowered to pre-decoded programs, executed warp by warp.
//!
//! Interface used by the driver layer: [`Module::load`] (cached by content hash),
//! [`Module::kernel`], [`launch`]. Everything else is internal: [`lower`] and [`decode`]
//! build the [`program`], [`launch`] schedules blocks, [`exec`] runs warps, [`sync`] is
//! the block barriers, [`ops`],
//! [`alu`] and [`tensor`] give instructions their meaning, [`memory`] and [`check`] are the
//! sanitizer.
//!
//! Room for Hopper's asynchronous machinery (wgmma, TMA, mbarrier), which the sm_90a GEMM
//! will need, without a rewrite:
//! - *Instruction table*: every instruction is decoded once into an [`program::Op`] variant
//!   and executed by one function over the lanes in `exec`; collectives already take the whole
//!   warp (`tensor::mma`, `tensor::ldmatrix`). A warpgroup instruction (`wgmma.mma_async`) is
//!   a collective over four consecutive warps: the block scheduler in `launch::run_block`
//!   already parks warps at barriers and releases them together, and the same mechanism parks
//!   the four warps of a warpgroup until all have issued the instruction, then runs it once.
//! - *Async proxies*: cp.async already models data that lands later (`exec::CpAsyncLane`:
//!   per-thread open and committed groups, destination bytes marked pending in the shadow
//!   memory until completion). TMA bulk copies and `wgmma`'s asynchronous accumulator writes
//!   fit the same shape: a queue of pending operations per issuing thread or warpgroup,
//!   completed at the matching wait (`cp.async.bulk.wait_group`, `wgmma.wait_group`), with the
//!   shadow's pending bit catching reads that do not wait.
//! - *Transaction barriers*: an mbarrier is an object in shared memory; it becomes a small
//!   table in `exec::BlockState` keyed by its shared address (phase, pending arrivals,
//!   expected transaction bytes). Completing a TMA copy decrements the transaction count; a
//!   warp spinning on `mbarrier.try_wait` becomes a new `WarpState` that the block scheduler
//!   resumes when the phase flips, exactly as `WarpState::Barrier` is resumed today, and a
//!   phase that can never flip is reported as the same deadlock error.

pub mod alu;
pub mod api;
pub mod check;
pub mod decode;
pub mod decode_mods;
pub mod exec;
pub mod launch;
pub mod lower;
pub mod memory;
pub mod ops;
pub mod program;
pub mod proxy;
pub mod regalloc;
pub mod sync;
pub mod tensor;
pub mod vector;
pub mod wgmma;
pub mod wgmma_exec;

pub use api::*;
