//! `atom` and `red`: which operation/type/vector combinations the PTX ISA (9.x, tables
//! "Atom/Red Scalar Type Operations" and the vector tables after them) lists, and the value
//! each one stores, one memory element at a time.
//!
//! Packed (`.f16x2`, `.bf16x2`) and vector (`.v2`..`.v8`) forms are atomic per scalar
//! element only, so the interpreter applies [`apply`] to each element separately and the
//! halves of a packed word are two independent f16/bf16 operations: a packed word is never
//! one integer. Float `.add` rounds to nearest even; `.min`/`.max` are the non-atomic
//! `min`/`max` (no `.NaN`). Subnormals are kept except by `.add.f32` without `.noftz` on
//! global memory, which flushes inputs and result; shared memory keeps them, which is why the
//! flush is decided per access, not per instruction.

use super::float::minmax_bits;
use super::fp::{self, Fmt, BF16, F16, F32, F64};
use super::types::{Rnd, Ty};

/// The `.op` of an `atom` or `red`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Inc,
    Dec,
    And,
    Or,
    Xor,
    Exch,
    Cas,
}

impl AtomOp {
    pub fn name(self) -> &'static str {
        match self {
            AtomOp::Add => "add",
            AtomOp::Min => "min",
            AtomOp::Max => "max",
            AtomOp::Inc => "inc",
            AtomOp::Dec => "dec",
            AtomOp::And => "and",
            AtomOp::Or => "or",
            AtomOp::Xor => "xor",
            AtomOp::Exch => "exch",
            AtomOp::Cas => "cas",
        }
    }
}

fn ty_name(ty: Ty) -> String {
    format!("{ty:?}").to_lowercase()
}

/// The scalar operations the ISA lists per type (`red` has no `.exch`/`.cas`).
fn scalar_ops(ty: Ty) -> &'static [AtomOp] {
    use AtomOp::*;
    match ty {
        Ty::U32 => &[Add, Inc, Dec, Min, Max],
        Ty::S32 | Ty::U64 => &[Add, Min, Max],
        Ty::S64 => &[Min, Max],
        Ty::F32 | Ty::F64 | Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2 => &[Add],
        Ty::B16 => &[Cas],
        Ty::B32 | Ty::B64 => &[And, Or, Xor, Exch, Cas],
        _ => &[],
    }
}

/// Checks an `atom`/`red` form against the ISA's tables; `vec` is 1 for scalar forms.
/// Returns why a form is refused, for the load error.
pub fn check(red: bool, op: AtomOp, ty: Ty, vec: usize, noftz: bool) -> Result<(), String> {
    let what = if red { "red" } else { "atom" };
    let half = matches!(ty, Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2);
    if red && matches!(op, AtomOp::Exch | AtomOp::Cas) {
        return Err(format!("red has no .{} (use atom)", op.name()));
    }
    if vec > 1 {
        let ok = match ty {
            Ty::F16 | Ty::Bf16 => matches!(vec, 2 | 4 | 8),
            Ty::F16x2 | Ty::Bf16x2 | Ty::F32 => matches!(vec, 2 | 4),
            _ => false,
        };
        let ops_ok = if ty == Ty::F32 {
            op == AtomOp::Add
        } else {
            matches!(op, AtomOp::Add | AtomOp::Min | AtomOp::Max)
        };
        if !ok || !ops_ok {
            return Err(format!(
                "the ISA has no vector {what}.{}.v{vec}.{} (vector forms: .add on .v2/.v4 \
                 .f32; .add/.min/.max on .v2/.v4/.v8 .f16/.bf16 and .v2/.v4 .f16x2/.bf16x2)",
                op.name(),
                ty_name(ty)
            ));
        }
    } else if !scalar_ops(ty).contains(&op) {
        return Err(format!(
            "the ISA has no {what}.{}.{} (listed for this type: {})",
            op.name(),
            ty_name(ty),
            match scalar_ops(ty) {
                [] => "none".to_string(),
                ops => ops
                    .iter()
                    .filter(|o| !(red && matches!(o, AtomOp::Exch | AtomOp::Cas)))
                    .map(|o| format!(".{}", o.name()))
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        ));
    }
    if half && !noftz {
        return Err(format!(
            "{what}.{} on f16/bf16 types requires .noftz",
            op.name()
        ));
    }
    if noftz && !(half || ty == Ty::F32) {
        return Err(format!(
            "{what}: .noftz applies only to f16, bf16 and f32 .add"
        ));
    }
    Ok(())
}

fn lanes(a: u64, b: u64, f: Fmt, op: impl Fn(u64, u64, Fmt) -> u64) -> u64 {
    let lo = op(a & 0xffff, b & 0xffff, f);
    let hi = op((a >> 16) & 0xffff, (b >> 16) & 0xffff, f);
    lo | hi << 16
}

fn float_op(op: AtomOp, a: u64, b: u64, f: Fmt) -> u64 {
    match op {
        AtomOp::Add => fp::add(a, b, f, Rnd::Rn),
        AtomOp::Min => minmax_bits(f, a, b, false, false),
        _ => minmax_bits(f, a, b, false, true),
    }
}

/// The value stored for one element: `old` is the memory element, `b` and `c` the operands
/// (`c` only for `.cas`). `ty` is the element type (for vectors, the type after `.vN`);
/// `flush` is set for `.add.f32` without `.noftz` on global memory. Results keep only the
/// low `ty.bits()` bits. Forms [`check`] refuses never reach here.
pub fn apply(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64, flush: bool) -> u64 {
    let mk = ty.mask();
    let (old, b) = (old & mk, b & mk);
    match (op, ty) {
        (_, Ty::F16) => float_op(op, old, b, F16),
        (_, Ty::Bf16) => float_op(op, old, b, BF16),
        (_, Ty::F16x2) => lanes(old, b, F16, |x, y, f| float_op(op, x, y, f)),
        (_, Ty::Bf16x2) => lanes(old, b, BF16, |x, y, f| float_op(op, x, y, f)),
        (AtomOp::Add, Ty::F32) if flush => F32.ftz(fp::add(F32.ftz(old), F32.ftz(b), F32, Rnd::Rn)),
        (_, Ty::F32) => float_op(op, old, b, F32),
        (_, Ty::F64) => float_op(op, old, b, F64),
        (AtomOp::Add, _) => old.wrapping_add(b) & mk,
        (AtomOp::Min, _) => super::int::min(ty, old, b),
        (AtomOp::Max, _) => super::int::max(ty, old, b),
        // inc(r, s) = r >= s ? 0 : r + 1 and dec(r, s) = (r == 0 || r > s) ? s : r - 1,
        // unsigned: the counter wraps within [0, s].
        (AtomOp::Inc, _) => {
            if old >= b {
                0
            } else {
                old + 1
            }
        }
        (AtomOp::Dec, _) => {
            if old == 0 || old > b {
                b
            } else {
                old - 1
            }
        }
        (AtomOp::And, _) => old & b,
        (AtomOp::Or, _) => old | b,
        (AtomOp::Xor, _) => old ^ b,
        (AtomOp::Exch, _) => b,
        (AtomOp::Cas, _) => {
            if old == b {
                c & mk
            } else {
                old
            }
        }
    }
}

#[cfg(test)]
mod tests;
