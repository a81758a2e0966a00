//! `VGPU_NUMERICS`: how closely arithmetic imitates a real chip rather than exact IEEE.
//!
//! - `exact` (the default): `mma` sums its products exactly and rounds once, and the `.approx`
//!   functions are correctly rounded. Results are the most accurate the ISA permits, which is
//!   what makes vgpu runs reproducible bit for bit.
//! - `hardware`: `mma` accumulates as the tensor cores do ([`crate::isa::tc`], Hopper profile)
//!   and the `.approx` functions err by up to their ISA bound ([`crate::isa::approx`]). A
//!   tolerance that holds here holds for errors of the size a real GPU makes, which a
//!   tolerance calibrated in `exact` mode does not show.
//! - `hardware-a100`: the same with the tensor-core profile measured on the A100 (blocks of 8
//!   products, one extra alignment bit), the configuration the published measurements cover
//!   most thoroughly; it truncates more often than the Hopper profile.
//!
//! The variable is read once per process, at the first use (cuInit checks it, so a misspelt
//! value fails there rather than silently running `exact`). The device name reports the mode.

use std::sync::OnceLock;

use crate::isa::tc::{TcProfile, AMPERE, HOPPER};

/// The numerics mode of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numerics {
    Exact,
    /// Tensor-core model with this profile, and `.approx` functions perturbed within bound.
    Hardware(TcProfile),
}

impl Numerics {
    /// Parses a `VGPU_NUMERICS` value; unset or empty means `exact`.
    pub fn parse(v: Option<&str>) -> Result<Numerics, String> {
        match v.map(str::trim) {
            None | Some("") | Some("exact") => Ok(Numerics::Exact),
            Some("hardware") => Ok(Numerics::Hardware(HOPPER)),
            Some("hardware-a100") => Ok(Numerics::Hardware(AMPERE)),
            Some(o) => Err(format!(
                "vgpu: VGPU_NUMERICS={o:?} is not one of exact, hardware, hardware-a100"
            )),
        }
    }

    /// Words for the device name and messages.
    pub fn describe(self) -> String {
        match self {
            Numerics::Exact => "exact".into(),
            Numerics::Hardware(p) => format!("hardware ({} tensor-core model)", p.name),
        }
    }
}

fn cell() -> &'static Result<Numerics, String> {
    static MODE: OnceLock<Result<Numerics, String>> = OnceLock::new();
    MODE.get_or_init(|| {
        let v = std::env::var("VGPU_NUMERICS").ok();
        Numerics::parse(v.as_deref())
    })
}

/// The mode, or the message saying why `VGPU_NUMERICS` is invalid.
pub fn checked() -> Result<Numerics, String> {
    cell().clone()
}

/// The mode of this process. An invalid value counts as `exact` here; [`checked`] (called by
/// cuInit) is where it is refused.
#[inline]
pub fn numerics() -> Numerics {
    match cell() {
        Ok(n) => *n,
        Err(_) => Numerics::Exact,
    }
}

/// The tensor-core profile when `mma` must imitate the hardware.
#[inline]
pub fn tc_profile() -> Option<TcProfile> {
    match numerics() {
        Numerics::Hardware(p) => Some(p),
        Numerics::Exact => None,
    }
}

/// True when `.approx` instructions must err as hardware may.
#[inline]
pub fn approx_hardware() -> bool {
    numerics() != Numerics::Exact
}
