//! The simulator proper: PTX modules lowered to pre-decoded programs, executed warp by warp.
//!
//! Interface used by the driver layer: [`Module::load`] (cached by content hash),
//! [`Module::kernel`], [`launch`]. Everything else is internal: [`lower`] and [`decode`]
//! build the [`program`], [`launch`] schedules blocks, [`exec`] runs warps, [`sync`] is
//! the block barriers, [`ops`],
//! [`alu`] and [`tensor`] give instructions their meaning, [`memory`] and [`check`] are the
//! sanitizer.
//!
//! Hopper's asynchronous machinery fits this shape without a rewrite:
//! - *Warpgroup collectives* ([`wgmma`], [`wgmma_exec`]): every instruction is decoded once
//!   into an [`program::Op`] variant; `wgmma.mma_async` is a collective over four
//!   consecutive warps. The block scheduler in `launch::run_block` parks each warp that
//!   reaches it (`exec::WarpState::Warpgroup`), as it parks warps at barriers, and runs the
//!   operation once when the fourth arrives; its accumulators land at `wgmma.wait_group`.
//!   [`proxy`] holds the async-proxy shadow state (`fence.proxy.async`), which TMA's reads
//!   of shared memory can share.
//! - *Async proxies*: cp.async already models data that lands later (`exec::CpAsyncLane`:
//!   per-thread open and committed groups, destination bytes marked pending in the shadow
//!   memory until completion). TMA bulk copies fit the same shape, as `wgmma`'s asynchronous
//!   accumulator writes do: a queue of pending operations per issuing thread or warpgroup,
//!   completed at the matching wait (`cp.async.bulk.wait_group`, `wgmma.wait_group`), with the
//!   shadow's pending bit catching reads that do not wait.
//! - *Transaction barriers*: an mbarrier is an object in shared memory; it becomes a small
//!   table in `exec::BlockState` keyed by its shared address (phase, pending arrivals,
//!   expected transaction bytes). Completing a TMA copy decrements the transaction count; a
//!   warp spinning on `mbarrier.try_wait` becomes a new `WarpState` that the block scheduler
//!   resumes when the phase flips, exactly as `WarpState::Barrier` is resumed today, and a
//!   phase that can never flip is reported as the same deadlock error. This is what
//!   [`mbarrier`] and [`tma`] do (`WarpState::Mbar`, `BlockState::mbars`).

pub mod alu;
pub mod api;
pub mod check;
pub mod decode;
pub mod decode_mods;
pub mod exec;
pub mod launch;
pub mod lower;
pub mod mbarrier;
pub mod memory;
pub mod ops;
pub mod program;
pub mod proxy;
pub mod regalloc;
pub mod sync;
pub mod tensor;
pub mod tensor_map;
pub mod tma;
pub mod vector;
pub mod wgmma;
pub mod wgmma_exec;

pub use api::*;
