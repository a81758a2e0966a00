//! One row per kernel entry point (launches summed), in schedule order, and the whole
//! run's total and floor: the table and the JSON of `samrt profile`.

use super::h100::{self, floor_s, Bound, Compulsory, Launch, Terms};
use crate::graph::cost::NodeCost;

/// Where the times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// CUDA events around each node on a real GPU.
    CudaEvents,
    /// The H100 model over vgpu's counters.
    Model,
}

impl TimeSource {
    pub fn name(self) -> &'static str {
        match self {
            TimeSource::CudaEvents => "cuda_events",
            TimeSource::Model => "model",
        }
    }
}

/// One kernel entry point, summed over its launches.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelRow {
    pub name: String,
    /// The graph op that launches it.
    pub op: &'static str,
    pub launches: u64,
    pub time_s: f64,
    /// The roofline floor of the row's FLOPs and bytes.
    pub floor_s: f64,
    /// Executed FLOPs (vgpu) or the op's nominal FLOPs (GPU).
    pub flops: u64,
    /// Compulsory bytes: each buffer and weight once per launch.
    pub bytes: u64,
    pub bound: Bound,
    /// vgpu's counters; zero on a GPU, which has none to give.
    pub warp_instructions: u64,
    pub mma: u64,
    pub shared_requests: u64,
    /// 128-byte shared-memory wavefronts of those requests (bank conflicts apart).
    pub shared_wavefronts: u64,
    pub bank_conflicts: u64,
    pub global_bytes_read: u64,
    pub global_bytes_written: u64,
    /// The model's terms summed over the launches (on a GPU: the floor's terms).
    pub terms: Terms,
}

/// A profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelProfile {
    pub device: String,
    pub time_source: TimeSource,
    pub kernels: Vec<KernelRow>,
}

impl KernelProfile {
    pub fn new(device: String, time_source: TimeSource) -> Self {
        KernelProfile {
            device,
            time_source,
            kernels: Vec::new(),
        }
    }

    fn row(&mut self, name: &str, op: &'static str) -> &mut KernelRow {
        let k = match self
            .kernels
            .iter()
            .position(|r| r.name == name && r.op == op)
        {
            Some(k) => k,
            None => {
                self.kernels.push(KernelRow {
                    name: name.to_string(),
                    op,
                    launches: 0,
                    time_s: 0.0,
                    floor_s: 0.0,
                    flops: 0,
                    bytes: 0,
                    bound: Bound::Latency,
                    warp_instructions: 0,
                    mma: 0,
                    shared_requests: 0,
                    shared_wavefronts: 0,
                    bank_conflicts: 0,
                    global_bytes_read: 0,
                    global_bytes_written: 0,
                    terms: Terms::default(),
                });
                self.kernels.len() - 1
            }
        };
        &mut self.kernels[k]
    }

    /// Adds one launch of `kernel` (by op `op`) as vgpu counted it, timed by the model.
    pub fn add_modelled(&mut self, kernel: &str, op: &'static str, l: &Launch, c: NodeCost) {
        let m = h100::model(
            l,
            Compulsory {
                read: c.read_bytes,
                written: c.write_bytes,
            },
        );
        let r = self.row(kernel, op);
        r.launches += 1;
        r.time_s += m.time_s;
        r.flops += m.flops;
        r.bytes += m.bytes;
        r.warp_instructions += l.warp_instructions;
        r.mma += l.mma;
        r.shared_requests += l.shared_requests;
        r.shared_wavefronts += l.shared_wavefronts;
        r.bank_conflicts += l.bank_conflicts;
        r.global_bytes_read += l.global_bytes_read;
        r.global_bytes_written += l.global_bytes_written;
        r.terms.add(&m.terms);
        r.finish();
    }

    /// Adds one node measured on a GPU: its time, and its nominal cost for the floor.
    pub fn add_measured(&mut self, kernel: &str, op: &'static str, time_s: f64, c: NodeCost) {
        let bytes = c.read_bytes + c.write_bytes;
        let r = self.row(kernel, op);
        r.launches += 1;
        r.time_s += time_s;
        r.flops += c.flops;
        r.bytes += bytes;
        r.terms.add(&Terms {
            tensor: c.flops as f64 / h100::PEAK_FLOPS,
            dram: bytes as f64 / h100::DRAM_BYTES_PER_S,
            latency: h100::LAUNCH_S,
            ..Terms::default()
        });
        r.finish();
    }

    pub fn total_s(&self) -> f64 {
        self.kernels.iter().map(|r| r.time_s).sum()
    }

    /// The kernels run one after another, so the run's floor is the sum of theirs.
    pub fn floor_s(&self) -> f64 {
        self.kernels.iter().map(|r| r.floor_s).sum()
    }

    pub fn launches(&self) -> u64 {
        self.kernels.iter().map(|r| r.launches).sum()
    }

    /// The JSON form (README, "samrt profile"); every row has every key on both sources.
    pub fn to_json(&self) -> serde_json::Value {
        let us = |s: f64| s * 1e6;
        let kernels: Vec<serde_json::Value> = self
            .kernels
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "op": r.op, "launches": r.launches,
                    "time_us": us(r.time_s), "floor_us": us(r.floor_s),
                    "flops": r.flops, "bytes": r.bytes, "bound": r.bound.name(),
                    "warp_instructions": r.warp_instructions, "mma": r.mma,
                    "shared_requests": r.shared_requests,
                    "shared_wavefronts": r.shared_wavefronts,
                    "bank_conflicts": r.bank_conflicts,
                    "global_bytes_read": r.global_bytes_read,
                    "global_bytes_written": r.global_bytes_written,
                })
            })
            .collect();
        serde_json::json!({
            "device": self.device,
            "time_source": self.time_source.name(),
            "total_us": us(self.total_s()),
            "floor_us": us(self.floor_s()),
            "kernels": kernels,
        })
    }

    /// The table: one line per kernel, then the total.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<28} {:<20} {:>8} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8} {:>6}  {}\n",
            "kernel",
            "op",
            "launches",
            "time us",
            "floor us",
            "GFLOP",
            "MB",
            "TFLOP/s",
            "GB/s",
            "roof%",
            "bound"
        );
        let line = |name: &str, op: &str, n: u64, t: f64, f: f64, flops: u64, bytes: u64| {
            format!(
                "{name:<28} {op:<20} {n:>8} {:>11.1} {:>11.1} {:>9.3} {:>9.2} {:>8.1} {:>8.0} {:>6.1}",
                t * 1e6,
                f * 1e6,
                flops as f64 / 1e9,
                bytes as f64 / 1e6,
                flops as f64 / t.max(1e-30) / 1e12,
                bytes as f64 / t.max(1e-30) / 1e9,
                100.0 * f / t.max(1e-30),
            )
        };
        for r in &self.kernels {
            s += &line(
                &r.name, r.op, r.launches, r.time_s, r.floor_s, r.flops, r.bytes,
            );
            s += &format!("  {}\n", r.bound.name());
        }
        let (flops, bytes) = self
            .kernels
            .iter()
            .fold((0, 0), |(f, b), r| (f + r.flops, b + r.bytes));
        s += &line(
            "total",
            "",
            self.launches(),
            self.total_s(),
            self.floor_s(),
            flops,
            bytes,
        );
        s.push('\n');
        s
    }
}

impl KernelRow {
    fn finish(&mut self) {
        self.floor_s = floor_s(self.flops, self.bytes);
        self.bound = self.terms.bound();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_of_one_entry_point_share_a_row_and_never_beat_its_floor() {
        let mut p = KernelProfile::new("vgpu".into(), TimeSource::Model);
        let l = Launch {
            blocks: 264,
            threads_per_block: 128,
            warp_instructions: 10_000,
            mma: 5_000,
            mma_flops: 5_000 * 4096,
            global_bytes_read: 4 << 20,
            global_bytes_written: 1 << 20,
            ..Launch::default()
        };
        let c = NodeCost {
            flops: 0,
            read_bytes: 2 << 20,
            write_bytes: 1 << 20,
        };
        p.add_modelled("gemm_bias_f16", "gemm_bias", &l, c);
        p.add_modelled("layer_norm_f16", "layer_norm", &Launch::default(), c);
        p.add_modelled("gemm_bias_f16", "gemm_bias", &l, c);
        assert_eq!(p.kernels.len(), 2);
        let g = &p.kernels[0];
        assert_eq!((g.launches, g.mma, g.flops), (2, 10_000, 10_000 * 4096));
        assert_eq!(g.bytes, 2 * (3 << 20));
        for r in &p.kernels {
            assert!(r.time_s >= r.floor_s, "{r:?}");
        }
        assert!(p.total_s() >= p.floor_s());
        let j = p.to_json();
        assert_eq!(j["time_source"], "model");
        assert_eq!(j["kernels"][0]["launches"], 2);
        assert_eq!(j["kernels"][1]["name"], "layer_norm_f16");
        assert!(p.table().lines().last().unwrap().starts_with("total"));
    }

    /// On a GPU: measured time, nominal FLOPs and bytes, the bound from the floor's terms.
    #[test]
    fn measured_rows_take_the_nominal_cost_and_a_floor_bound() {
        let mut p = KernelProfile::new("H100".into(), TimeSource::CudaEvents);
        let gemm = NodeCost {
            flops: 14_500_000_000,
            read_bytes: 10_000_000,
            write_bytes: 18_000_000,
        };
        p.add_measured("gemm_bias_f16", "gemm_bias", 30e-6, gemm);
        let ln = NodeCost {
            flops: 0,
            read_bytes: 12_600_000,
            write_bytes: 6_300_000,
        };
        p.add_measured("layer_norm_f32_f16", "layer_norm", 8e-6, ln);
        let tiny = NodeCost {
            flops: 0,
            read_bytes: 1000,
            write_bytes: 1000,
        };
        p.add_measured("cast_rows_f16", "cast_rows", 3e-6, tiny);
        let [g, l, t] = &p.kernels[..] else {
            panic!("{:?}", p.kernels)
        };
        assert_eq!(
            (g.bound, l.bound, t.bound),
            (Bound::Tensor, Bound::Dram, Bound::Latency)
        );
        assert!((g.floor_s - 14.5e9 / 989e12).abs() < 1e-12);
        assert!((l.floor_s - 18.9e6 / 3.35e12).abs() < 1e-12);
        assert_eq!(
            (g.flops, g.bytes, g.warp_instructions),
            (14_500_000_000, 28_000_000, 0)
        );
        assert_eq!(p.to_json()["time_source"], "cuda_events");
        assert!((p.total_s() - 41e-6).abs() < 1e-15);
    }
}
