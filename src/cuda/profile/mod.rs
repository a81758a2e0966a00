//! `samrt profile`'s library half: every kernel of a device run with its time, counters and
//! roofline floor. Host-only (no `cuda` feature needed), so the model is tested everywhere:
//! - [`h100`]: the H100 SXM timing model, pure functions over fixed constants;
//! - [`vgpu`]: vgpu's per-launch counters, read back from the file it appends them to;
//! - [`report`]: rows per kernel entry point, the total and floor, the table and the JSON.
//!
//! On a real GPU the times are CUDA events around each node and the FLOPs and bytes are the
//! graph's nominal ones (`crate::graph::cost`); on vgpu the times are the model's.

pub mod h100;
pub mod report;
pub mod vgpu;
