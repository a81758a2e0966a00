//! vgpu: a functional GPU simulator behind a drop-in `libcuda.so`.
//!
//! cudarc (and any other driver-API client) dlopens `libcuda.so`; with this library first on
//! `LD_LIBRARY_PATH` the same binaries run their CUDA paths on the CPU. Kernels are the PTX the
//! application embeds: [`ptx`] parses it, [`sim`] lowers it to a pre-decoded program and runs
//! it warp by warp (32 lanes, real divergence), checking memory accesses, shared-memory races
//! and cp.async waits as compute-sanitizer does. [`driver`] is the C ABI.
//!
//! Numeric semantics of individual instructions (rounding modes, f16, approximations, tensor
//! core fragments) live in [`isa`], as pure functions testable against the PTX ISA.
//! [`numerics`] selects, per process, exact arithmetic or errors of the size real hardware
//! makes (`VGPU_NUMERICS=exact|hardware`).
//!
//! Every launch counts what it did ([`sim::Profile`]: warp instructions by class, mma,
//! global bytes, shared requests, wavefronts and bank conflicts). `VGPU_PROFILE=1` prints
//! the counts on stderr for people; `VGPU_PROFILE_FILE=PATH` appends them to PATH as one
//! JSON line per launch for tools (the format is in the README; samrt's `profile` command
//! turns them into modelled H100 times).

pub mod driver;
pub mod isa;
pub mod mem;
pub mod numerics;
pub mod ptx;
pub mod sim;
