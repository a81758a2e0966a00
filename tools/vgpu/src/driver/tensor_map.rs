//! `cuTensorMapEncodeTiled`: validates the arguments as the CUDA driver documents them and
//! writes vgpu's record of the map (`sim::tensor_map`) into the caller's 128-byte object.
//! Pure encoding: like the real call it touches no device state, so it needs no context.

use std::ffi::c_void;

use super::error::{CUresult, CUDA_ERROR_INVALID_VALUE};
use super::state::guard_noinit;
use crate::sim::tensor_map::{validate, TiledArgs};

/// `CUtensorMap`: 16 opaque 64-bit words, 64-byte aligned.
#[repr(C, align(64))]
pub struct CUtensorMap {
    pub opaque: [u64; 16],
}

/// Reads `n` elements of a caller array; null with `n > 0` is an invalid argument.
///
/// # Safety
/// `p` must be null or point to at least `n` readable elements.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> Result<&'a [T], CUresult> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// `CUresult cuTensorMapEncodeTiled(CUtensorMap *tensorMap, CUtensorMapDataType
/// tensorDataType, cuuint32_t tensorRank, void *globalAddress, const cuuint64_t *globalDim,
/// const cuuint64_t *globalStrides, const cuuint32_t *boxDim, const cuuint32_t
/// *elementStrides, CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
/// CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill)`.
/// Every violated rule is CUDA_ERROR_INVALID_VALUE, with the rule named on stderr (the
/// error code alone does not say which argument was wrong).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cuTensorMapEncodeTiled(
    tensor_map: *mut CUtensorMap,
    dtype: u32,
    rank: u32,
    global: *mut c_void,
    global_dim: *const u64,
    global_strides: *const u64,
    box_dim: *const u32,
    element_strides: *const u32,
    interleave: u32,
    swizzle: u32,
    l2: u32,
    oob: u32,
) -> CUresult {
    guard_noinit(|| {
        if tensor_map.is_null() || !(tensor_map as usize).is_multiple_of(64) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if !(1..=5).contains(&rank) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let r = rank as usize;
        let args = TiledArgs {
            dtype,
            rank,
            global: global as u64,
            dims: slice(global_dim, r)?,
            strides: slice(global_strides, r - 1)?,
            box_dim: slice(box_dim, r)?,
            elem_strides: slice(element_strides, r)?,
            interleave,
            swizzle,
            l2,
            oob,
        };
        match validate(&args) {
            Ok(m) => {
                let bytes = m.encode();
                for (k, w) in (*tensor_map).opaque.iter_mut().enumerate() {
                    *w = u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]));
                }
                Ok(())
            }
            Err(why) => {
                eprintln!("vgpu: cuTensorMapEncodeTiled: {why}");
                Err(CUDA_ERROR_INVALID_VALUE)
            }
        }
    })
}
