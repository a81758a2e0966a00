//! The generic executor on small schedules (vgpu, or a GPU): weights resolved once when a
//! schedule is bound, external buffers bound by address (rebinding recaptures the CUDA
//! graph), per-node timing, errors that name what is wrong, and the checked-arena mode
//! catching an overflow from one planned buffer into the next.

use std::process::Command;
use std::sync::Arc;

use crate::common::gpu::{gpu_or_skip, Rng};
use cudarc::driver::DevicePtr;
use samrt::cuda::model::scales::cast_rows;
use samrt::cuda::ops::cast_rows::{cast_rows as launch_cast_rows, CastRowsShape};
use samrt::cuda::runtime::executor::{Executor, Launch, LaunchCx};
use samrt::cuda::runtime::view::DevView;
use samrt::cuda::runtime::weights::DeviceWeights;
use samrt::graph::ops::{CastRows, Op, OpDesc, ResidualInit};
use samrt::graph::weights::HostTensor;
use samrt::graph::{BufId, DType, Graph, Role};

/// `x` (external, fp32 `[rows, dim]`) -> cast_rows -> (fp16 rows, row scales); and the
/// position embedding weight `pos` repeated into `res` by residual_init.
fn schedule(rows: usize, dim: usize, pos_name: &str) -> Graph<Op> {
    let mut g: Graph<Op> = Graph::default();
    let x = g.buffer("x", DType::F32, rows * dim, Role::External);
    let out = g.buffer("out", DType::F16, rows * dim, Role::Output);
    let rs = g.buffer("row_scale", DType::F32, rows, Role::Output);
    let res = g.buffer("res", DType::F32, rows * dim, Role::Output);
    g.add(
        "cast",
        Op::CastRows(CastRows {
            x,
            out,
            row_scale: rs,
            rows,
            dim,
        }),
    );
    let pos_embed = g.weights.id(pos_name, DType::F16, rows * dim);
    g.add(
        "pos",
        Op::ResidualInit(ResidualInit {
            pos_embed,
            residual: res,
            batch: 1,
            tokens: rows,
            dim,
        }),
    );
    g
}

#[test]
fn external_buffers_rebind_and_weights_resolve_once() {
    let Some(gpu) = gpu_or_skip("external_buffers_rebind_and_weights_resolve_once") else {
        return;
    };
    let gpu = Arc::new(gpu);
    let mut rng = Rng::new("external_buffers_rebind_and_weights_resolve_once");
    // Odd sizes: rows not a multiple of any block, dim a multiple of 8 as cast_rows needs.
    let (rows, dim) = (37, 24);
    let pos: Vec<f32> = rng.vec(rows * dim, -2.0, 2.0);
    let weights = DeviceWeights::upload(&gpu, &[HostTensor::f16("pos", &pos).unwrap()]).unwrap();
    let s = gpu.stream();
    // Rows far beyond fp16's range, so the per-row scales are not all 1.
    let x1: Vec<f32> = rng.vec(rows * dim, -1e6, 1e6);
    let x2: Vec<f32> = rng.vec(rows * dim, -3.0, 3.0);
    let (d1, d2) = (
        gpu.upload_f32(s, &x1).unwrap(),
        gpu.upload_f32(s, &x2).unwrap(),
    );
    let (p1, p2) = (d1.device_ptr(s).0, d2.device_ptr(s).0);
    let (x, out, rs, res) = (BufId(0), BufId(1), BufId(2), BufId(3));
    let pos16: Vec<f32> = pos
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();

    let exec = Executor::new(
        "test",
        Arc::clone(&gpu),
        Arc::clone(&weights),
        Box::new(move |_| Ok(schedule(rows, dim, "pos"))),
    );
    exec.with(0, |ex, st| {
        let err = ex.run(st).unwrap_err().to_string();
        assert!(err.contains("external buffer x is not bound"), "{err}");
        for (ptr, host) in [(p1, &x1), (p2, &x2), (p1, &x1)] {
            // SAFETY: d1 and d2 hold rows * dim f32 values and live until the end of the test.
            unsafe { ex.bind_external(st, x, ptr, rows * dim)? };
            ex.run(st)?;
            let (mut o, mut r, mut e) = (
                vec![0u16; rows * dim],
                vec![0f32; rows],
                vec![0f32; rows * dim],
            );
            s.memcpy_dtoh(&ex.view::<u16>(st, out)?, &mut o).unwrap();
            s.memcpy_dtoh(&ex.view::<f32>(st, rs)?, &mut r).unwrap();
            s.memcpy_dtoh(&ex.view::<f32>(st, res)?, &mut e).unwrap();
            gpu.synchronize(s)?;
            // cast_rows is exact apart from the one fp16 rounding: bit-identical to its
            // reference; residual_init copies the fp16 weight exactly.
            let (want_o, want_r) = cast_rows(host, dim);
            let want_o: Vec<u16> = want_o.iter().map(|v| v.to_bits()).collect();
            assert_eq!(o, want_o, "cast rows after binding {ptr:#x}");
            assert_eq!(r, want_r);
            assert_eq!(e, pos16);
        }
        // Per-node timing runs each node eagerly and names its op and entry point.
        let t = ex.time_nodes(st, 2)?;
        let names: Vec<(&str, &str)> = t.iter().map(|n| (n.op, n.entry_point.as_str())).collect();
        assert_eq!(
            names,
            [
                ("cast_rows", "cast_rows_f16"),
                ("residual_init", "residual_init_f32")
            ]
        );
        assert!(t.iter().all(|n| n.median_ms >= 0.0));
        assert_eq!(ex.time_runs(st, 2)?.len(), 2);
        // SAFETY (both): refused before anything is bound.
        let err = unsafe { ex.bind_external(st, x, p1, rows * dim - 1) }.unwrap_err();
        assert!(err.to_string().contains("external elements"), "{err}");
        let err = unsafe { ex.bind_external(st, out, p1, rows * dim) }.unwrap_err();
        assert!(err.to_string().contains("binding out"), "{err}");
        // A view of the wrong element width is refused (f16 buffer as f32).
        let err = ex.view::<f32>(st, out).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("out is F16, viewed as 4-byte")),
            "{err:?}"
        );
        Ok(())
    })
    .unwrap();

    // A weight the block does not hold fails when the schedule is bound, naming it.
    let exec = Executor::new(
        "test",
        Arc::clone(&gpu),
        weights,
        Box::new(move |_| Ok(schedule(rows, dim, "no_such_weight"))),
    );
    let err = exec.with(0, |_, _| Ok(())).unwrap_err().to_string();
    assert!(err.contains("no_such_weight"), "{err}");
}

/// cast_rows over `rows` rows whose output buffer the schedule sized for `rows - 1`: the
/// planted bug, a kernel writing one row past its buffer.
struct Overflowing {
    x: BufId,
    out: BufId,
    row_scale: BufId,
    rows: usize,
    dim: usize,
}

impl OpDesc for Overflowing {
    fn name(&self) -> &'static str {
        "overflowing_cast_rows"
    }
    fn entry_point(&self) -> String {
        "cast_rows_f16".into()
    }
    fn reads(&self) -> Vec<BufId> {
        vec![self.x]
    }
    fn writes(&self) -> Vec<BufId> {
        vec![self.out, self.row_scale]
    }
}

impl Launch for Overflowing {
    fn launch(&self, cx: &LaunchCx<'_>) -> samrt::Result<()> {
        let x = cx.buf::<f32>(self.x)?;
        let mut rs = cx.buf::<f32>(self.row_scale)?;
        let short = cx.buf::<u16>(self.out)?;
        // SAFETY: deliberately broken (the test's point): the view claims a row more than
        // the buffer holds. Only run on vgpu, where the write past it lands in the arena or
        // in a guard gap, never in memory of another test.
        let mut out = unsafe { DevView::<u16>::new(short.ptr(), self.rows * self.dim, cx.stream) };
        let shape = CastRowsShape {
            rows: self.rows,
            dim: self.dim,
        };
        launch_cast_rows(cx.gpu, cx.stream, &x, &mut out, &mut rs, shape)
    }
}

const OVERFLOW_CHILD: &str = "SAMRT_TEST_OVERFLOW_CHILD";

/// Runs the overflowing schedule in this process, in the arena mode the environment picks
/// (`SAMRT_CHECKED_ARENA`), and reports its outcome on stdout. A child process of
/// [`checked_arena_catches_an_overflow_between_planned_buffers`]: the caught overflow is a
/// sticky error, which would fail every later test of the process.
#[test]
fn overflow_child() {
    if std::env::var(OVERFLOW_CHILD).is_err() {
        return;
    }
    let gpu = Arc::new(gpu_or_skip("overflow_child").expect("the parent found a GPU"));
    let weights = DeviceWeights::upload(&gpu, &[]).unwrap();
    // out's 63 rows of 128 fp16 are 63 * 256 bytes, so the planned arena puts row_scale
    // right where the 64th row goes: x [0, 32768), out [32768, 48896), row_scale after.
    let (rows, dim) = (64, 128);
    let build = move |_| {
        let mut g: Graph<Overflowing> = Graph::default();
        let x = g.buffer("x", DType::F32, rows * dim, Role::Input);
        let out = g.buffer("out", DType::F16, (rows - 1) * dim, Role::Output);
        let row_scale = g.buffer("row_scale", DType::F32, rows, Role::Output);
        let op = Overflowing {
            x,
            out,
            row_scale,
            rows,
            dim,
        };
        g.add("overflow", op);
        Ok(g)
    };
    let exec = Executor::new("test", Arc::clone(&gpu), weights, Box::new(build));
    let checked = exec.is_checked_arena();
    let r = exec.with(0, |ex, st| {
        let x: Vec<f32> = (0..rows * dim).map(|i| (i % 97) as f32).collect();
        let s = gpu.stream();
        s.memcpy_htod(&x, &mut ex.view::<f32>(st, BufId(0))?)
            .unwrap();
        ex.run(st)?;
        gpu.synchronize(s)
    });
    match (checked, r) {
        (false, Ok(())) => println!("OVERFLOW UNNOTICED in the shared arena"),
        (true, Err(e)) => {
            let e = e.to_string();
            assert!(e.contains("ILLEGAL_ADDRESS"), "{e}");
            println!("OVERFLOW CAUGHT: {e}");
        }
        (checked, r) => panic!("checked arena {checked}: {r:?}"),
    }
}

#[test]
fn checked_arena_catches_an_overflow_between_planned_buffers() {
    let test = "checked_arena_catches_an_overflow_between_planned_buffers";
    let Some(gpu) = gpu_or_skip(test) else {
        return;
    };
    if !gpu.info().name.starts_with("vgpu") {
        println!("skipping {test}: it writes past a device allocation, safe only on vgpu");
        return;
    }
    for (mode, want) in [("0", "OVERFLOW UNNOTICED"), ("1", "OVERFLOW CAUGHT")] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "executor::overflow_child", "--nocapture"])
            .env(OVERFLOW_CHILD, "1")
            .env("SAMRT_CHECKED_ARENA", mode)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains(want),
            "SAMRT_CHECKED_ARENA={mode}:\n{stdout}\n{stderr}"
        );
        if mode == "1" {
            // vgpu's line names the kernel and the write past `out`, into its guard gap.
            assert!(
                stderr.contains("vgpu: kernel `cast_rows_f16`")
                    && stderr.contains("out-of-bounds global write"),
                "{stderr}"
            );
        }
    }
}
