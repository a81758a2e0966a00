//! The 128-byte `CUtensorMap` as vgpu lays it out, and the argument rules of
//! `cuTensorMapEncodeTiled` (CUDA driver API, tiled mode).
//!
//! The driver treats the object as opaque; vgpu writes its own little-endian record into it,
//! led by a magic word and a version, so that `cp.async.bulk.tensor` given anything else (an
//! uninitialised parameter, a map from another encoder) fails with a message instead of
//! copying from a garbage address. The driver validates at encode time, as the real one
//! does; the simulator decodes and re-checks only what an overwritten record could break.

/// "VGPUTMAP" as a little-endian word.
const MAGIC: u64 = u64::from_le_bytes(*b"VGPUTMAP");
const VERSION: u8 = 1;

/// `CUtensorMapSwizzle` values the simulator lays out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swizzle {
    None,
    B32,
    B64,
    B128,
}

impl Swizzle {
    /// Bytes of the span whose 16-byte chunks are permuted (0: none).
    pub fn span(self) -> u32 {
        match self {
            Swizzle::None => 0,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// The shared-memory byte address at which the byte the unswizzled layout puts at `a`
    /// lands: bits 4.. of the address (the 16-byte chunk within the span) are XORed with
    /// the same number of bits from bit 7 up (the 128-byte line, modulo 8, 4 or 2), so the
    /// pattern repeats every 1024, 512 or 256 bytes.
    pub fn apply(self, a: u32) -> u32 {
        let bits = match self {
            Swizzle::None => return a,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        };
        let mask = (1u32 << bits) - 1;
        a ^ (((a >> 7) & mask) << 4)
    }
}

/// A decoded tiled tensor map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMap {
    /// `CUtensorMapDataType` value.
    pub dtype: u32,
    pub elem_bytes: u32,
    pub rank: u32,
    pub global: u64,
    pub dims: [u64; 5],
    /// Byte stride of dimensions 1..rank (dimension 0 is the element size).
    pub strides: [u64; 5],
    pub box_dim: [u32; 5],
    pub swizzle: Swizzle,
    /// `CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA`: out-of-bounds elements read as
    /// a NaN instead of zero.
    pub oob_nan: bool,
}

/// Element size in bytes of each `CUtensorMapDataType` that has whole-byte elements
/// (UINT8 .. TFLOAT32_FTZ); the packed sub-byte types are not supported.
fn elem_bytes(dtype: u32) -> Option<u32> {
    Some(match dtype {
        0 => 1,
        1 | 6 | 9 => 2,
        2 | 3 | 7 | 10 | 11 | 12 => 4,
        4 | 5 | 8 => 8,
        _ => return None,
    })
}

fn is_float(dtype: u32) -> bool {
    matches!(dtype, 6..=12)
}

/// The arguments of `cuTensorMapEncodeTiled`, already read from the caller's arrays.
pub struct TiledArgs<'a> {
    pub dtype: u32,
    pub rank: u32,
    pub global: u64,
    pub dims: &'a [u64],
    pub strides: &'a [u64],
    pub box_dim: &'a [u32],
    pub elem_strides: &'a [u32],
    pub interleave: u32,
    pub swizzle: u32,
    pub l2: u32,
    pub oob: u32,
}

/// Checks every rule the driver documents for a tiled map (and refuses, with the reason,
/// what vgpu does not model: interleaved layouts, element strides other than 1, the
/// sub-byte types and the 128B-atom swizzles).
pub fn validate(a: &TiledArgs) -> Result<TensorMap, String> {
    let rank = a.rank;
    if !(1..=5).contains(&rank) {
        return Err(format!("tensorRank {rank} is not in 1..=5"));
    }
    let r = rank as usize;
    let eb = elem_bytes(a.dtype).ok_or_else(|| {
        format!(
            "tensorDataType {} is not a whole-byte CUtensorMapDataType",
            a.dtype
        )
    })?;
    if a.interleave > 2 {
        return Err(format!(
            "interleave {} is not a CUtensorMapInterleave",
            a.interleave
        ));
    }
    if a.interleave != 0 {
        return Err("interleaved tensor maps are not supported by vgpu".into());
    }
    let swizzle = match a.swizzle {
        0 => Swizzle::None,
        1 => Swizzle::B32,
        2 => Swizzle::B64,
        3 => Swizzle::B128,
        4..=6 => return Err("the 128B-atom swizzle modes are not supported by vgpu".into()),
        s => return Err(format!("swizzle {s} is not a CUtensorMapSwizzle")),
    };
    if a.l2 > 3 {
        return Err(format!(
            "l2Promotion {} is not a CUtensorMapL2promotion",
            a.l2
        ));
    }
    if a.oob > 1 {
        return Err(format!(
            "oobFill {} is not a CUtensorMapFloatOOBfill",
            a.oob
        ));
    }
    if a.oob == 1 && !is_float(a.dtype) {
        return Err("oobFill NAN_REQUEST_ZERO_FMA needs a floating-point data type".into());
    }
    if a.global == 0 || !a.global.is_multiple_of(16) {
        return Err(format!(
            "globalAddress {:#x} is not 16-byte aligned (or null)",
            a.global
        ));
    }
    let mut dims = [1u64; 5];
    for (k, &d) in a.dims[..r].iter().enumerate() {
        if d == 0 || d > 1 << 32 {
            return Err(format!("globalDim[{k}] = {d} is not in 1..=2^32"));
        }
        dims[k] = d;
    }
    let mut strides = [0u64; 5];
    strides[0] = eb as u64;
    for (k, &s) in a.strides[..r - 1].iter().enumerate() {
        if !s.is_multiple_of(16) || s >= 1 << 40 {
            return Err(format!(
                "globalStrides[{k}] = {s} is not a multiple of 16 below 2^40"
            ));
        }
        strides[k + 1] = s;
    }
    let mut box_dim = [1u32; 5];
    for (k, &b) in a.box_dim[..r].iter().enumerate() {
        if b == 0 || b > 256 {
            return Err(format!("boxDim[{k}] = {b} is not in 1..=256"));
        }
        box_dim[k] = b;
    }
    let inner = box_dim[0] * eb;
    if !inner.is_multiple_of(16) {
        return Err(format!(
            "boxDim[0] * element size = {inner} bytes is not a multiple of 16"
        ));
    }
    if swizzle != Swizzle::None && inner > swizzle.span() {
        return Err(format!(
            "box inner dimension of {inner} bytes exceeds the {}-byte swizzle span",
            swizzle.span()
        ));
    }
    for (k, &e) in a.elem_strides[..r].iter().enumerate() {
        if e == 0 || e > 8 {
            return Err(format!("elementStrides[{k}] = {e} is not in 1..=8"));
        }
        if e != 1 && k > 0 {
            return Err(format!(
                "elementStrides[{k}] = {e}: strided boxes are not supported by vgpu"
            ));
        }
    }
    Ok(TensorMap {
        dtype: a.dtype,
        elem_bytes: eb,
        rank,
        global: a.global,
        dims,
        strides,
        box_dim,
        swizzle,
        oob_nan: a.oob == 1,
    })
}

impl TensorMap {
    /// Bytes of one box in shared memory.
    pub fn box_bytes(&self) -> u64 {
        self.box_dim[..self.rank as usize]
            .iter()
            .map(|&b| b as u64)
            .product::<u64>()
            * self.elem_bytes as u64
    }

    pub fn encode(&self) -> [u8; 128] {
        let mut o = [0u8; 128];
        o[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        o[8] = VERSION;
        o[9] = self.dtype as u8;
        o[10] = self.rank as u8;
        o[11] = match self.swizzle {
            Swizzle::None => 0,
            s => s.span().trailing_zeros() as u8,
        };
        o[12] = self.oob_nan as u8;
        o[16..24].copy_from_slice(&self.global.to_le_bytes());
        for k in 0..5 {
            // dims - 1 fits 32 bits (2^32 is allowed); box - 1 fits a byte.
            let p = 24 + 4 * k;
            o[p..p + 4].copy_from_slice(&((self.dims[k] - 1) as u32).to_le_bytes());
            let p = 48 + 8 * k;
            o[p..p + 8].copy_from_slice(&self.strides[k].to_le_bytes());
            o[88 + k] = (self.box_dim[k] - 1) as u8;
        }
        o
    }

    /// Reads a map written by [`TensorMap::encode`].
    pub fn decode(o: &[u8; 128]) -> Result<TensorMap, String> {
        let word = |p: usize| u64::from_le_bytes(o[p..p + 8].try_into().unwrap_or([0; 8]));
        if word(0) != MAGIC || o[8] != VERSION {
            return Err(
                "the tensor-map operand is not a CUtensorMap written by cuTensorMapEncodeTiled \
                 (bad magic/version: uninitialised, overwritten or from another encoder)"
                    .into(),
            );
        }
        let swizzle = match o[11] {
            0 => Swizzle::None,
            5 => Swizzle::B32,
            6 => Swizzle::B64,
            7 => Swizzle::B128,
            s => return Err(format!("corrupt tensor map: swizzle code {s}")),
        };
        let dtype = o[9] as u32;
        let rank = o[10] as u32;
        let elem_bytes = elem_bytes(dtype)
            .filter(|_| (1..=5).contains(&rank))
            .ok_or("corrupt tensor map: data type or rank")?;
        let mut m = TensorMap {
            dtype,
            elem_bytes,
            rank,
            global: word(16),
            dims: [0; 5],
            strides: [0; 5],
            box_dim: [0; 5],
            swizzle,
            oob_nan: o[12] != 0,
        };
        for k in 0..5 {
            let p = 24 + 4 * k;
            m.dims[k] = u32::from_le_bytes(o[p..p + 4].try_into().unwrap_or([0; 4])) as u64 + 1;
            m.strides[k] = word(48 + 8 * k);
            m.box_dim[k] = o[88 + k] as u32 + 1;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_garbage_is_refused() {
        let a = TiledArgs {
            dtype: 6,
            rank: 3,
            global: 0x1000,
            dims: &[64, 10, 1 << 32],
            strides: &[128, 1280],
            box_dim: &[64, 8, 256],
            elem_strides: &[1, 1, 1],
            interleave: 0,
            swizzle: 3,
            l2: 2,
            oob: 0,
        };
        let m = validate(&a).unwrap();
        assert_eq!(TensorMap::decode(&m.encode()).unwrap(), m);
        assert!(TensorMap::decode(&[0xCD; 128])
            .unwrap_err()
            .contains("magic"));
    }
}
