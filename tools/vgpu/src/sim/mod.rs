//! The simulator proper: PTX modules lowered to pre-decoded programs, executed warp by warp.
//!
//! Interface used by the driver layer: [`Module::load`] (cached by content hash),
//! [`Module::kernel`], [`launch`]. Everything else is internal: [`lower`] and [`decode`]
//! build the [`program`], [`launch`] schedules blocks, [`exec`] runs warps, [`ops`],
//! [`alu`] and [`tensor`] give instructions their meaning, [`memory`] and [`check`] are the
//! sanitizer.

pub mod alu;
pub mod api;
pub mod check;
pub mod decode;
pub mod exec;
pub mod launch;
pub mod lower;
pub mod memory;
pub mod ops;
pub mod program;
pub mod tensor;

pub use api::*;
