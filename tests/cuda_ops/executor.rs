//! The generic executor on small schedules (vgpu, or a GPU): weights resolved once when a
//! schedule is bound, external buffers bound by address (rebinding recaptures the CUDA
//! graph), per-node timing, and errors that name what is wrong.

use std::sync::Arc;

use crate::common::gpu::{gpu_or_skip, Rng};
use cudarc::driver::DevicePtr;
use samrt::cuda::model::scales::cast_rows;
use samrt::cuda::runtime::executor::Executor;
use samrt::cuda::runtime::weights::DeviceWeights;
use samrt::graph::ops::{CastRows, Op, ResidualInit};
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
