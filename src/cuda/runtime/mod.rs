//! The device side that every schedule shares: the context (device, stream, embedded
//! modules), the weight block uploaded once, and typed views into the arena.

pub mod context;
pub mod executor;
pub mod resident;
pub mod view;
pub mod weights;
