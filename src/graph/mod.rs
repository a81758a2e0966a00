//! A model as a scheduled graph of named ops over buffers, planned into one arena.
//!
//! Not a framework, five small pieces, each host-only (they compile without the `cuda`
//! feature, so `samrt info --graph` shows a plan on any machine):
//! - [`Graph`]: buffers, nodes in execution order and the weight table; a node's payload is
//!   an op that names its buffers and weights itself ([`ops::OpDesc`]);
//! - [`ops`]: the op vocabulary, one variant per kernel family with typed parameters, and
//!   the one function per family that selects the kernel entry point;
//! - [`planner`]: arena offsets from buffer lifetimes, so the peak device memory is known
//!   before anything runs;
//! - [`cost`]: each node's nominal FLOPs and compulsory bytes, the floors `samrt profile`
//!   reports;
//! - [`weights`]: weights as graph inputs (a [`WeightId`] per tensor, resolved to a device
//!   address once when a schedule is bound, never looked up by name while it runs).
//!
//! The device half of the executor (`crate::cuda::runtime::executor`) runs any `Graph<O>`
//! whose ops can launch; [`describe`] prints a plan.

pub mod buffer;
pub mod cost;
pub mod decoder_ops;
pub mod describe;
pub mod fold_ops;
pub mod gemm_tile;
pub mod ops;
pub mod planner;
pub mod schedule;
pub mod weights;

pub use buffer::{BufId, Buffer, DType, Role};
pub use ops::OpDesc;
pub use schedule::{Graph, Node};
pub use weights::{WeightId, WeightTable};
