//! Tensor-core GEMM launchers (`kernels/gemm.cu`): nn.Linear `a[m, k] @ w[n, k]^T` with the
//! epilogue picked by [`Epilogue`] ([`gemm`]), and nn.Conv2d(3x3, padding 1) on an NHWC
//! token map as an implicit GEMM on the same main loop ([`conv3x3`]). fp16 operands, fp32
//! accumulation, bias and scales.
//!
//! Every epilogue first forms, in fp32,
//! `y[m][n] = acc[m][n] * in_scale * row_scale[m] + bias[n]` (see [`GemmScales`]; a missing
//! `row_scale` is 1 and a missing bias 0), then stores `f16(out_scale * y)`,
//! `f16(out_scale * gelu(y))` or `residual_f32 += y`.

use cudarc::driver::{
    sys::{self, CUdeviceptr},
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg, SyncOnDrop,
};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::graph::ops::{conv3x3_entry, GemmEpilogue};
use crate::{Error, Result};

pub use crate::graph::gemm_tile::{
    tma_operand_ok, GemmBuild, GemmTile, GEMM_BLOCK_K, GEMM_CP_SUFFIX, GEMM_PAIR_SUFFIX,
    GEMM_STAGES, GEMM_STAGES_SM90A,
};
/// The smallest BM of any tile: the grid's y limit is checked against it.
const GEMM_MIN_BLOCK_M: usize = 64;
/// K is loaded in 16-byte chunks that must lie wholly inside or outside the matrix.
pub const GEMM_K_MULTIPLE: usize = 8;
/// The epilogue stores column pairs.
pub const GEMM_N_MULTIPLE: usize = 2;
/// `conv3x3_f16_*` gathers 16-byte chunks of one pixel's channels: Cin must be a multiple.
pub const CONV3X3_CIN_MULTIPLE: usize = 8;

/// What happens to `y` (see the module docs) after the K loop; each variant carries its
/// output.
pub enum Epilogue<'a> {
    /// `out[m, n] = f16(out_scale * y)`.
    Bias(&'a mut dyn DevicePtrMut<u16>),
    /// `out[m, n] = f16(out_scale * gelu_erf(y))`, the encoder MLP's lin1.
    BiasGelu(&'a mut dyn DevicePtrMut<u16>),
    /// `residual[m, n] += y` in place on the fp32 residual stream (attn proj, lin2). fp32
    /// cannot overflow here, so there is no output scale: `out_scale` must be 1.
    BiasResidual(&'a mut dyn DevicePtrMut<f32>),
}

impl Epilogue<'_> {
    /// The host-side epilogue, whose entry point this launches.
    pub fn kind(&self) -> GemmEpilogue {
        match self {
            Epilogue::Bias(_) => GemmEpilogue::Bias,
            Epilogue::BiasGelu(_) => GemmEpilogue::BiasGelu,
            Epilogue::BiasResidual(_) => GemmEpilogue::BiasResidual,
        }
    }

    pub fn kernel_name(&self, tile: GemmTile) -> String {
        self.kind().entry_point(tile)
    }
}

/// Scale factors for fp16 overflow safety, applied in fp32 in every epilogue:
/// `y[m][n] = acc[m][n] * in_scale * row_scale[m] + bias[n]`, so an A row stored divided
/// by `row_scale[m]` (or all of A divided by `in_scale`) is restored before the bias; the
/// fp16 outputs then store `out_scale * y` (after GELU), for a consumer that takes `y`
/// pre-divided. The default (no row scale, 1, 1) is the plain GEMM, at the same speed: the
/// kernel tests `row_scale` once per thread, and the per-element work is one FMA either way.
#[derive(Clone, Copy)]
pub struct GemmScales<'a> {
    /// fp32 `[m]` (at least m elements, 4-byte aligned), or `None` for all ones.
    pub row_scale: Option<&'a dyn DevicePtr<f32>>,
    pub in_scale: f32,
    /// Ignored by (and must be 1 for) [`Epilogue::BiasResidual`].
    pub out_scale: f32,
}

impl Default for GemmScales<'_> {
    fn default() -> Self {
        GemmScales {
            row_scale: None,
            in_scale: 1.0,
            out_scale: 1.0,
        }
    }
}

impl std::fmt::Debug for GemmScales<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GemmScales")
            .field("row_scale_len", &self.row_scale.map(|r| r.len()))
            .field("in_scale", &self.in_scale)
            .field("out_scale", &self.out_scale)
            .finish()
    }
}

impl GemmScales<'_> {
    /// Host-side checks (no GPU): both factors finite and non-zero, and `out_scale == 1`
    /// where the epilogue has no fp16 output to scale.
    pub fn validate(&self, has_f16_output: bool) -> Result<()> {
        for (what, v) in [("in_scale", self.in_scale), ("out_scale", self.out_scale)] {
            if !v.is_finite() || v == 0.0 {
                return Err(Error::Unsupported(format!(
                    "gemm {what} must be finite and non-zero, got {v}"
                )));
            }
        }
        if !has_f16_output && self.out_scale != 1.0 {
            return Err(Error::Unsupported(format!(
                "the fp32 residual epilogue has no output scale; got out_scale={}",
                self.out_scale
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let GemmShape { m, n, k } = *self;
        if m == 0 || n == 0 || k == 0 {
            return Err(Error::Unsupported(format!(
                "gemm with an empty dimension (m={m}, n={n}, k={k})"
            )));
        }
        if !k.is_multiple_of(GEMM_K_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "gemm needs k % {GEMM_K_MULTIPLE} == 0, got k={k}"
            )));
        }
        if !n.is_multiple_of(GEMM_N_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "gemm needs n % {GEMM_N_MULTIPLE} == 0, got n={n}"
            )));
        }
        as_i32("gemm m", m)?;
        as_i32("gemm n", n)?;
        as_i32("gemm k", k)?;
        if m.div_ceil(GEMM_MIN_BLOCK_M) > 65535 {
            return Err(Error::Unsupported(format!(
                "gemm m={m} exceeds the grid's y limit"
            )));
        }
        Ok(())
    }

    /// The launch of block tile `tile` in `build` on a device of `sms` SMs: one block per
    /// (BN columns, BM rows), or for the warp-specialised builds the persistent grid of
    /// [`GemmTile::persistent_blocks`].
    pub fn config(&self, tile: GemmTile, build: GemmBuild, sms: usize) -> LaunchConfig {
        let grid_dim = match build {
            GemmBuild::Sm90aWs | GemmBuild::Sm90aWsPair => (
                tile.persistent_blocks(build, self.m, self.n, sms) as u32,
                1,
                1,
            ),
            GemmBuild::Portable | GemmBuild::Sm90a => (
                self.n.div_ceil(tile.block_n()) as u32,
                self.m.div_ceil(tile.block_m()) as u32,
                1,
            ),
        };
        LaunchConfig {
            grid_dim,
            block_dim: (tile.threads(build) as u32, 1, 1),
            shared_mem_bytes: tile.smem_bytes(build) as u32,
        }
    }

    /// 2*m*n*k, for throughput figures.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// nn.Linear on the tensor cores: `a` is `[m, k]`, `w` the `[n, k]` weight (out, in),
/// `bias` `[n]` fp32 or `None` (zero), all row-major and contiguous; `scales` as in
/// [`GemmScales`] (`GemmScales::default()` for the plain product). The block tile is
/// [`GemmTile::select`]'s for `n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    gpu: &GpuContext,
    stream: &CudaStream,
    a: &dyn DevicePtr<u16>,
    w: &dyn DevicePtr<u16>,
    bias: Option<&dyn DevicePtr<f32>>,
    shape: GemmShape,
    scales: GemmScales<'_>,
    epilogue: Epilogue<'_>,
) -> Result<()> {
    let tile = GemmTile::select(shape.n);
    gemm_tiled(gpu, stream, (a, w), bias, shape, scales, epilogue, tile)
}

/// [`gemm`] on a given block tile (every tile gives the same bits; the op rows run each).
#[allow(clippy::too_many_arguments)]
pub fn gemm_tiled(
    gpu: &GpuContext,
    stream: &CudaStream,
    operands: (&dyn DevicePtr<u16>, &dyn DevicePtr<u16>),
    bias: Option<&dyn DevicePtr<f32>>,
    shape: GemmShape,
    scales: GemmScales<'_>,
    epilogue: Epilogue<'_>,
    tile: GemmTile,
) -> Result<()> {
    let t = (tile, None);
    gemm_tiled_build(gpu, stream, operands, bias, shape, scales, epilogue, t)
}

/// [`gemm_tiled`], optionally on a given build instead of [`GemmBuild::select`]'s (the op
/// rows compare the builds bit for bit): where select gives a warp-specialised build,
/// `Some(GemmBuild::Sm90a)` runs the cp.async fallback and `Some(Sm90aWs)` /
/// `Some(Sm90aWsPair)` the other form (the pair only on a tile that has one); any other
/// build than select's is an error (on Hopper the portable entry points are replaced,
/// elsewhere there are no wgmma ones).
#[allow(clippy::too_many_arguments)]
pub fn gemm_tiled_build(
    gpu: &GpuContext,
    stream: &CudaStream,
    (a, w): (&dyn DevicePtr<u16>, &dyn DevicePtr<u16>),
    bias: Option<&dyn DevicePtr<f32>>,
    shape: GemmShape,
    scales: GemmScales<'_>,
    epilogue: Epilogue<'_>,
    (tile, force): (GemmTile, Option<GemmBuild>),
) -> Result<()> {
    shape.validate()?;
    scales.validate(!matches!(epilogue, Epilogue::BiasResidual(_)))?;
    let GemmShape { m, n, k } = shape;
    check_len("gemm a", a.len(), m * k)?;
    check_len("gemm w", w.len(), n * k)?;
    let name = epilogue.kernel_name(tile);
    let out_bytes = epilogue.kind().out_bytes();
    let (ap, _a) = a.device_ptr(stream);
    let (wp, _w) = w.device_ptr(stream);
    check_align("gemm a", ap, 16)?;
    check_align("gemm w", wp, 16)?;
    let (op, _o) = match epilogue {
        Epilogue::Bias(out) | Epilogue::BiasGelu(out) => {
            check_len("gemm output", out.len(), m * n)?;
            let (p, guard) = out.device_ptr_mut(stream);
            check_align("gemm output", p, 4)?;
            (p, guard)
        }
        Epilogue::BiasResidual(res) => {
            check_len("gemm residual", res.len(), m * n)?;
            let (p, guard) = res.device_ptr_mut(stream);
            check_align("gemm residual", p, 8)?;
            (p, guard)
        }
    };
    let dims = [m as i32, n as i32, k as i32];
    let chosen = GemmBuild::select(
        gpu.is_sm90a_entry(&name),
        tma_operand_ok(ap, m, k) && tma_operand_ok(wp, n, k),
        tile.pair_wins(n, k, out_bytes),
    );
    let build = match force {
        None => chosen,
        Some(b) if b.can_replace(chosen, tile) => b,
        Some(b) => {
            return Err(Error::Unsupported(format!(
                "{name}: the {b:?} build cannot run here ({chosen:?} is the one available)"
            )))
        }
    };
    let (name, operands) = match build {
        GemmBuild::Sm90aWs | GemmBuild::Sm90aWsPair => {
            let maps = [
                TensorMap::rows_f16(ap, m, k, tile.step_rows(build))?,
                TensorMap::rows_f16(wp, n, k, tile.block_n())?,
            ];
            let name = if build == GemmBuild::Sm90aWsPair {
                name + GEMM_PAIR_SUFFIX
            } else {
                name
            };
            (name, Operands::Maps(Box::new(maps)))
        }
        GemmBuild::Sm90a => (name + GEMM_CP_SUFFIX, Operands::Ptrs([ap, wp])),
        GemmBuild::Portable => (name, Operands::Ptrs([ap, wp])),
    };
    launch(
        gpu,
        stream,
        (&name, build),
        &operands,
        bias,
        &scales,
        (m, n),
        op,
        &dims,
        (shape, tile),
    )
}

/// A `CUtensorMap` passed by value as a kernel's `const __grid_constant__ CUtensorMap`
/// parameter (128 bytes, the driver's alignment).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct TensorMap(sys::CUtensorMap);

// SAFETY: a plain 128-byte value the driver copies into the parameter space; its bits are
// what cuTensorMapEncodeTiled wrote, which the kernel only hands to the TMA unit.
unsafe impl DeviceRepr for TensorMap {}

impl TensorMap {
    /// The map of a row-major fp16 `[rows][k]` matrix at `addr` (which must pass
    /// [`tma_operand_ok`]) for the warp-specialised GEMMs: boxes of 64 k by `box_rows` rows in the
    /// 128-byte swizzle (gemm_tile.cuh's shared layout), out-of-bounds elements read as
    /// zero, L2 promotion in 128-byte lines.
    pub fn rows_f16(addr: CUdeviceptr, rows: usize, k: usize, box_rows: usize) -> Result<Self> {
        if !tma_operand_ok(addr, rows, k) || box_rows > 256 {
            return Err(Error::Unsupported(format!(
                "no tensor map for a [{rows}][{k}] fp16 operand at {addr:#x} in boxes of \
                 {box_rows} rows"
            )));
        }
        let dims = [k as u64, rows as u64];
        let strides = [k as u64 * 2];
        let boxes = [GEMM_BLOCK_K as u32, box_rows as u32];
        let elem = [1u32, 1];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        let what = format!("cuTensorMapEncodeTiled([{rows}][{k}] fp16, box {box_rows})");
        guarded(&what, || {
            // SAFETY: every pointer is to a live local array of the rank (2) the call reads, and
            // `map` has room for the map; the arguments were checked against the driver's
            // preconditions above (dims, 16-byte aligned address and stride, box <= 256 and its
            // 128 B inner extent equal to the swizzle span).
            unsafe {
                sys::cuTensorMapEncodeTiled(
                    map.as_mut_ptr(),
                    sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                    2,
                    addr as *mut std::ffi::c_void,
                    dims.as_ptr(),
                    strides.as_ptr(),
                    boxes.as_ptr(),
                    elem.as_ptr(),
                    sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                    sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                    sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                    sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
                )
            }
            .result()
        })?;
        // SAFETY: the driver wrote the whole map (it returned success).
        Ok(TensorMap(unsafe { map.assume_init() }))
    }
}

/// The first two kernel parameters: the operand pointers (gemm.cu, gemm_sm90a.cu's `_cp`
/// entries, conv3x3) or their tensor maps (gemm_ws_sm90a.cu).
enum Operands {
    Ptrs([CUdeviceptr; 2]),
    Maps(Box<[TensorMap; 2]>),
}

/// Shape of a 3x3, padding 1, stride 1 convolution on an NHWC map: input
/// `[batch, h, w, cin]`, output `[batch, h, w, cout]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3x3Shape {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
}

impl Conv3x3Shape {
    /// The implicit GEMM: m = batch*h*w output pixels, n = cout, k = 9*cin.
    pub fn gemm(&self) -> Result<GemmShape> {
        let too_big =
            || Error::Unsupported(format!("conv3x3 {self:?} exceeds the kernel's index range"));
        let m = self
            .batch
            .checked_mul(self.h)
            .and_then(|v| v.checked_mul(self.w))
            .ok_or_else(too_big)?;
        let k = self.cin.checked_mul(9).ok_or_else(too_big)?;
        Ok(GemmShape { m, n: self.cout, k })
    }

    /// Rejects what `conv3x3_f16_*` cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let Conv3x3Shape {
            batch,
            h,
            w,
            cin,
            cout,
        } = *self;
        if [batch, h, w, cin, cout].contains(&0) {
            return Err(Error::Unsupported(format!(
                "conv3x3 with an empty dimension ({self:?})"
            )));
        }
        if !cin.is_multiple_of(CONV3X3_CIN_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "conv3x3 needs cin % {CONV3X3_CIN_MULTIPLE} == 0, got cin={cin}"
            )));
        }
        let g = self.gemm()?;
        g.validate()?;
        // The kernel's per-tap input offsets ((ky-1)*w + kx-1)*cin + c are i32.
        g.m.checked_mul(cin)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "conv3x3 input of {}x{cin} elements exceeds i32 range",
                    g.m
                ))
            })?;
        Ok(())
    }

    /// 2*m*n*k, for throughput figures.
    pub fn flops(&self) -> f64 {
        [self.batch, self.h, self.w, self.cout, 9 * self.cin, 2]
            .iter()
            .map(|&v| v as f64)
            .product()
    }
}

/// nn.Conv2d(cin, cout, 3, padding=1) on the tensor cores, as an implicit GEMM (no im2col
/// buffer): `input` `[batch, h, w, cin]` fp16 (NHWC, the token-major map), `weight` fp16 in
/// the `[cout][3][3][cin]` layout of [`conv3x3_weight_layout`](crate::cpu::ops::gemm::conv3x3_weight_layout), `bias` `[cout]` fp32 or
/// `None`, `out` `[batch, h, w, cout]` fp16 = `f16(out_scale * y)` with `y` as in
/// [`GemmScales`] (`row_scale` indexed by output pixel). The block tile is
/// [`GemmTile::select`]'s for `cout`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    gpu: &GpuContext,
    stream: &CudaStream,
    input: &dyn DevicePtr<u16>,
    weight: &dyn DevicePtr<u16>,
    bias: Option<&dyn DevicePtr<f32>>,
    shape: Conv3x3Shape,
    scales: GemmScales<'_>,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    let tile = GemmTile::select(shape.cout);
    conv3x3_tiled(gpu, stream, (input, weight), bias, shape, scales, out, tile)
}

/// [`conv3x3`] on a given block tile.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_tiled(
    gpu: &GpuContext,
    stream: &CudaStream,
    (input, weight): (&dyn DevicePtr<u16>, &dyn DevicePtr<u16>),
    bias: Option<&dyn DevicePtr<f32>>,
    shape: Conv3x3Shape,
    scales: GemmScales<'_>,
    out: &mut dyn DevicePtrMut<u16>,
    tile: GemmTile,
) -> Result<()> {
    shape.validate()?;
    scales.validate(true)?;
    let g = shape.gemm()?;
    check_len("conv3x3 input", input.len(), g.m * shape.cin)?;
    check_len("conv3x3 weight", weight.len(), g.n * g.k)?;
    check_len("conv3x3 output", out.len(), g.m * g.n)?;
    let (ip, _i) = input.device_ptr(stream);
    let (wp, _w) = weight.device_ptr(stream);
    check_align("conv3x3 input", ip, 16)?;
    check_align("conv3x3 weight", wp, 16)?;
    let (op, _o) = out.device_ptr_mut(stream);
    check_align("conv3x3 output", op, 4)?;
    let dims = [shape.batch, shape.h, shape.w, shape.cin, shape.cout].map(|v| v as i32);
    // conv3x3 has no Hopper build.
    launch(
        gpu,
        stream,
        (&conv3x3_entry(tile), GemmBuild::Portable),
        &Operands::Ptrs([ip, wp]),
        bias,
        &scales,
        (g.m, g.n),
        op,
        &dims,
        (g, tile),
    )
}

/// Checks the epilogue inputs and launches `name(a, w, bias, row_scale, in_scale,
/// out_scale, out, dims...)`, the signature of every kernel in `kernels/gemm.cu` (and of
/// their `_cp` wgmma builds in `kernels/gemm_sm90a.cu`; `kernels/gemm_ws_sm90a.cu`'s take
/// the tensor maps of a and w instead), over the GEMM `shape` in `tile` built as `build`. The
/// caller has validated the shape (which bounds `dims` to i32) and the operand buffers.
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &GpuContext,
    stream: &CudaStream,
    (name, build): (&str, GemmBuild),
    operands: &Operands,
    bias: Option<&dyn DevicePtr<f32>>,
    scales: &GemmScales<'_>,
    (m, n): (usize, usize),
    op: CUdeviceptr,
    dims: &[i32],
    (shape, tile): (GemmShape, GemmTile),
) -> Result<()> {
    gpu.check_stream(stream)?;
    let config = shape.config(tile, build, gpu.info().multiprocessors as usize);
    let smem = tile.smem_bytes(build);
    if smem > gpu.info().max_shared_per_block {
        return Err(Error::Unsupported(format!(
            "{name} needs {smem} B of shared memory per block, the device allows {}",
            gpu.info().max_shared_per_block
        )));
    }
    let f = gpu.function(name)?;
    let (bp, _b) = nullable(stream, bias, "gemm bias", n, 8)?;
    let (rp, _r) = nullable(stream, scales.row_scale, "gemm row_scale", m, 4)?;
    let mut b = stream.launch_builder(f);
    match operands {
        Operands::Ptrs([ap, wp]) => b.arg(ap).arg(wp),
        Operands::Maps(maps) => b.arg(&maps[0]).arg(&maps[1]),
    };
    b.arg(&bp)
        .arg(&rp)
        .arg(&scales.in_scale)
        .arg(&scales.out_scale)
        .arg(&op);
    for d in dims {
        b.arg(d);
    }
    // SAFETY: (a, w, bias, row_scale, in_scale, out_scale, out, ints...) is the signature of
    // every gemm.cu kernel, with 3 ints (M, N, K) for the gemm_* kernels and 5 (batch, H, W,
    // Cin, Cout) for conv3x3_f16_*, as the callers pass; on Hopper the gemm_* kernels
    // (gemm_ws_sm90a.cu; GemmBuild::Sm90aWs) take a and w as
    // tensor maps encoded for exactly those buffers and shapes. Shapes were validated
    // (multiples, i32 range) and every buffer checked to hold the elements and alignment
    // the kernel reads and writes; bias and row_scale are null or hold n and m elements.
    guarded(name, || unsafe { b.launch(config) }.map(|_| ()))
}

/// Device pointer of an optional fp32 buffer of at least `need` elements, or null.
fn nullable<'s>(
    stream: &'s CudaStream,
    buf: Option<&'s dyn DevicePtr<f32>>,
    what: &str,
    need: usize,
    align: u64,
) -> Result<(CUdeviceptr, Option<SyncOnDrop<'s>>)> {
    let Some(buf) = buf else {
        return Ok((0, None));
    };
    check_len(what, buf.len(), need)?;
    let (p, guard) = buf.device_ptr(stream);
    check_align(what, p, align)?;
    Ok((p, Some(guard)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::gemm::conv3x3_weight_layout;

    #[test]
    fn conv3x3_weight_permutation() {
        let (cout, cin) = (3, 5);
        let w: Vec<usize> = (0..cout * cin * 9).collect();
        let p = conv3x3_weight_layout(&w, cout, cin);
        for o in 0..cout {
            for ky in 0..3 {
                for kx in 0..3 {
                    for c in 0..cin {
                        let official = ((o * cin + c) * 3 + ky) * 3 + kx;
                        assert_eq!(p[o * 9 * cin + (ky * 3 + kx) * cin + c], official);
                    }
                }
            }
        }
    }

    #[test]
    fn conv3x3_shapes_are_validated() {
        let neck = Conv3x3Shape {
            batch: 1,
            h: 64,
            w: 64,
            cin: 256,
            cout: 256,
        };
        assert!(neck.validate().is_ok());
        assert_eq!(
            neck.gemm().unwrap(),
            GemmShape {
                m: 4096,
                n: 256,
                k: 2304
            }
        );
        for bad in [
            Conv3x3Shape { cin: 12, ..neck },
            Conv3x3Shape { cout: 255, ..neck },
            Conv3x3Shape { batch: 0, ..neck },
            Conv3x3Shape {
                batch: usize::MAX,
                ..neck
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::Unsupported(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scales_are_validated() {
        let s = GemmScales::default();
        assert!(s.validate(true).is_ok() && s.validate(false).is_ok());
        for bad in [0.0, f32::NAN, f32::INFINITY] {
            let a = GemmScales { in_scale: bad, ..s };
            assert!(a.validate(true).is_err());
            let b = GemmScales {
                out_scale: bad,
                ..s
            };
            assert!(b.validate(true).is_err());
        }
        let half = GemmScales {
            out_scale: 0.5,
            ..s
        };
        assert!(half.validate(true).is_ok());
        assert!(matches!(half.validate(false), Err(Error::Unsupported(_))));
    }
}
