//! Every kernel of one bound schedule with its time and floor, for `samrt profile`: on a
//! GPU each node's time is the median of eager runs between CUDA events, its FLOPs and
//! bytes the graph's nominal ones; on vgpu each node runs once while vgpu records its
//! counters, and the H100 model times them. Shared by the encoder and the decoder.

use crate::cuda::profile::report::{KernelProfile, TimeSource};
use crate::cuda::profile::vgpu::{is_vgpu, Recording};
use crate::cuda::runtime::executor::{Bound, Executor};
use crate::graph::cost::node_cost;
use crate::graph::ops::{Op, OpDesc};
use crate::{Error, Result};

/// Profiles `st`, whose inputs the caller has filled.
pub fn profile_bound(ex: &Executor<Op>, st: &Bound<Op>, iters: usize) -> Result<KernelProfile> {
    let info = ex.gpu().info();
    let g = st.graph();
    if !is_vgpu(&info.name) {
        let times = ex.time_nodes(st, iters)?;
        let mut p = KernelProfile::new(info.name.clone(), TimeSource::CudaEvents);
        for (node, t) in g.nodes.iter().zip(&times) {
            let c = node_cost(g, node);
            p.add_measured(&t.entry_point, t.op, t.median_ms * 1e-3, c);
        }
        return Ok(p);
    }
    ex.gpu().synchronize(ex.gpu().stream())?;
    let mut p = KernelProfile::new(info.name.clone(), TimeSource::Model);
    let mut rec = Recording::start()?;
    ex.run_each_node(st, |k| {
        let node = &g.nodes[k];
        let launches = rec.take()?;
        if launches.is_empty() {
            return Err(Error::Cuda(format!(
                "{} ({}): vgpu recorded no launch in {}; is this vgpu older than its \
                 VGPU_PROFILE_FILE support?",
                node.label,
                node.op.entry_point(),
                rec.path().display()
            )));
        }
        let c = node_cost(g, node);
        for l in launches {
            p.add_modelled(&l.kernel, node.op.name(), &l.launch, c);
        }
        Ok(())
    })?;
    Ok(p)
}
