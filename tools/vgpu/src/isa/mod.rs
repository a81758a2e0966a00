//! Numeric semantics of PTX instructions as pure functions.
//!
//! Conventions shared by every submodule:
//! - Register values travel as `u64` bit images, as the interpreter stores them: an f32 is
//!   `f32::to_bits() as u64`, an f16 the low 16 bits, an f16x2 the low 32 bits with element 0
//!   in bits 0..16. Results put the destination value in the low `ty.bits()` bits and leave
//!   the upper bits **zero** (no sign extension); the interpreter widens if a wider register
//!   needs it.
//! - Inputs are only read in their low `ty.bits()` bits; stray upper bits are ignored.
//! - Nothing here panics on any input (all integer arithmetic wraps or is range-checked).
//! - Rounding is exact: results are what the PTX ISA (9.0) specifies for the given rounding
//!   modifier, computed by the exact soft-float core in [`fp`]. Approximate instructions
//!   (`.approx`) return (near) correctly rounded values, which lie within the ISA's bounds;
//!   [`approx`] has the hardware-like variants that err by up to those bounds, and [`tc`]
//!   the tensor cores' truncating accumulation (both for `VGPU_NUMERICS=hardware`).

pub mod approx;
pub mod atom;
pub mod cvt;
pub mod float;
pub mod fp;
pub mod half;
pub mod int;
pub mod tc;
pub mod types;
pub mod warp;
pub mod wgmma;

pub use types::{CmpOp, IRnd, Rnd, Ty};
