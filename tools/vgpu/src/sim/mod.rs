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
//!   operation once when the fourth arrives; its accumulators land at `wgmma.wait_group`,
//!   a queue of pending work per warp like cp.async's groups.
//! - *Transaction barriers* ([`mbarrier`]): an mbarrier is an object in shared memory and a
//!   small table in `exec::BlockState` keyed by its shared address (phase, pending
//!   arrivals, expected transaction bytes). A warp spinning on `mbarrier.try_wait` is parked
//!   (`exec::WarpState::Mbar`) and resumed when a barrier changes, as `WarpState::Barrier`
//!   is, and a phase that can never complete is reported as the same deadlock error.
//! - *Async proxy*: TMA tile loads and bulk copies ([`tma`], maps from [`tensor_map`]) land
//!   their data when issued and count their bytes against the mbarrier; the shadow marks the
//!   bytes as written by the async proxy, unreadable until the phase completes and ordered
//!   only for warps that waited on it (`check::Shadow::async_write`). [`proxy`] checks the
//!   other direction: shared memory written through the generic proxy and read by wgmma
//!   needs a `fence.proxy.async` ordered before the read; bytes a TMA load wrote need none.

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
