//! The generic executor, device side: runs any planned [`Graph`] whose ops can launch, on
//! one stream over one arena, and replays it as a CUDA graph.
//!
//! Per shape key (the encoder's batch size, say) it builds the schedule once, plans it,
//! allocates the arena, resolves every weight id to its device address and every buffer to
//! its arena address, and on first run captures the launches as a CUDA graph; later runs
//! replay it with no allocation. Inputs change between runs as data in fixed buffers, never
//! as kernel arguments, so one capture serves every input of that shape. External buffers
//! (device memory the caller owns, e.g. an embedding kept for many decoder runs) are bound
//! by address; binding another address drops the capture that baked the old one in.
//!
//! In the checked-arena mode (`SAMRT_CHECKED_ARENA=1`, or [`Executor::checked_arena`]) every
//! planned buffer gets a device allocation of its own, of exactly its size, instead of an
//! offset in the shared arena. A kernel that writes or reads past its buffer then leaves
//! the allocation, which a memory checker (vgpu's guard gaps, compute-sanitizer) reports;
//! in the arena it would land silently in the neighbouring buffer. Kernels and launch order
//! are the same in both modes, so results are bit-identical.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, CudaStream, DevicePtr};

use super::context::{guarded, GpuContext};
use super::view::DevView;
use super::weights::DeviceWeights;
use crate::graph::buffer::{BufId, DType, Role};
use crate::graph::ops::OpDesc;
use crate::graph::planner::{plan, Plan};
use crate::graph::schedule::{Graph, NodeTime};
use crate::graph::weights::WeightId;
use crate::{Error, Result};

/// An op that can launch its kernel, given the addresses of its buffers and weights.
pub trait Launch: OpDesc {
    fn launch(&self, cx: &LaunchCx<'_>) -> Result<()>;
}

/// What a launching op sees: the device, the stream, and typed views of its buffers and
/// weights (addresses resolved when the schedule was bound).
pub struct LaunchCx<'a> {
    pub gpu: &'a GpuContext,
    pub stream: &'a Arc<CudaStream>,
    buffers: &'a [Resolved],
    weights: &'a [Resolved],
}

/// A buffer or weight bound to a device address: `len` elements of `dtype`.
#[derive(Clone, Copy, Debug)]
struct Resolved {
    ptr: u64,
    len: usize,
    dtype: DType,
}

impl Resolved {
    /// A typed view, refused when `T` is not the element size the schedule declared (a
    /// view of the wrong width would claim memory the buffer does not have).
    fn view<T>(self, what: &str, stream: &Arc<CudaStream>) -> Result<DevView<T>> {
        if std::mem::size_of::<T>() != self.dtype.size() {
            return Err(Error::Cuda(format!(
                "{what} is {:?}, viewed as {}-byte elements",
                self.dtype,
                std::mem::size_of::<T>()
            )));
        }
        // SAFETY: the address and length come from the plan (inside the state's arena or
        // the buffer's own allocation),
        // the weight block (alive as long as the executor) or `bind_external`, whose
        // caller keeps the memory alive; the element size was checked above.
        Ok(unsafe { DevView::new(self.ptr, self.len, stream) })
    }
}

impl LaunchCx<'_> {
    /// Buffer `b` as elements of `T`, which must have the buffer's dtype size.
    pub fn buf<T>(&self, b: BufId) -> Result<DevView<T>> {
        self.buffers[b.0].view(&format!("buffer {}", b.0), self.stream)
    }

    /// Weight `w` as elements of `T`, which must have the weight's dtype size.
    pub fn weight<T>(&self, w: WeightId) -> Result<DevView<T>> {
        self.weights[w.0].view(&format!("weight {}", w.0), self.stream)
    }
}

/// An instantiated CUDA graph that may move between threads.
struct CapturedGraph(CudaGraph);

// SAFETY: driver-API handles are not tied to the creating thread; cudarc binds the context
// before each launch, and the graph is only touched under the executor's mutex, one thread
// at a time.
unsafe impl Send for CapturedGraph {}

/// One shape key's schedule, bound to device addresses.
pub struct Bound<O> {
    graph: Graph<O>,
    plan: Plan,
    /// Dropped before the arena it was captured over.
    exec: Option<CapturedGraph>,
    /// Keeps the arena (or, in the checked mode, each buffer) allocated; `buffers` points
    /// into it.
    _memory: Vec<CudaSlice<u8>>,
    buffers: Vec<Resolved>,
    weights: Vec<Resolved>,
}

impl<O> Bound<O> {
    pub fn graph(&self) -> &Graph<O> {
        &self.graph
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// Builds the schedule for a shape key.
pub type BuildFn<O> = dyn Fn(usize) -> Result<Graph<O>> + Send + Sync;

pub struct Executor<O> {
    /// First, so that captured graphs and arenas go before the weights and the context
    /// they refer to (fields drop in order).
    states: Mutex<HashMap<usize, Bound<O>>>,
    /// What runs, for messages ("encoder").
    name: &'static str,
    gpu: Arc<GpuContext>,
    weights: Arc<DeviceWeights>,
    build: Box<BuildFn<O>>,
    use_graphs: bool,
    /// One allocation per planned buffer instead of the shared arena (see the module docs).
    checked: bool,
}

impl<O: Launch> Executor<O> {
    /// An executor named `name` (for messages) over device `weights` for the schedules
    /// `build` makes. CUDA-graph replay is on unless `SAMRT_CUDA_GRAPHS=0` (then every run
    /// launches node by node); the checked-arena mode is on with `SAMRT_CHECKED_ARENA=1`.
    pub fn new(
        name: &'static str,
        gpu: Arc<GpuContext>,
        weights: Arc<DeviceWeights>,
        build: Box<BuildFn<O>>,
    ) -> Self {
        let use_graphs = std::env::var("SAMRT_CUDA_GRAPHS").map_or(true, |v| v != "0");
        let checked = std::env::var("SAMRT_CHECKED_ARENA").is_ok_and(|v| v == "1");
        Executor {
            name,
            gpu,
            weights,
            build,
            states: Mutex::new(HashMap::new()),
            use_graphs,
            checked,
        }
    }

    /// Turns the checked-arena mode on or off, whatever the environment says. Schedules
    /// already bound keep their memory; call it before the first run.
    pub fn checked_arena(mut self, on: bool) -> Self {
        self.checked = on;
        self
    }

    pub fn is_checked_arena(&self) -> bool {
        self.checked
    }

    pub fn gpu(&self) -> &Arc<GpuContext> {
        &self.gpu
    }

    pub fn weights(&self) -> &Arc<DeviceWeights> {
        &self.weights
    }

    /// Runs `f` on the bound schedule of `key`, binding it on first use. The state is locked
    /// for the duration, so one context runs one schedule at a time.
    pub fn with<R>(
        &self,
        key: usize,
        f: impl FnOnce(&Self, &mut Bound<O>) -> Result<R>,
    ) -> Result<R> {
        let mut states = self.states.lock().map_err(|_| {
            Error::Cuda(format!(
                "CUDA {} state poisoned by an earlier panic",
                self.name
            ))
        })?;
        let st = match states.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.bind(key)?),
        };
        f(self, st)
    }

    fn bind(&self, key: usize) -> Result<Bound<O>> {
        let graph = (self.build)(key)?;
        let plan = plan(&graph);
        let stream = self.gpu.stream();
        // Through the context's counted allocation (`device_allocations`, what the
        // steady-state tests measure); zeroed once here, at bind, never per run.
        let alloc = |bytes: usize, what: &str| self.gpu.alloc_zeros::<u8>(stream, bytes, what);
        let addr = |m: &CudaSlice<u8>| {
            let (p, _g) = m.device_ptr(stream);
            p
        };
        let mut memory = Vec::new();
        let mut ptrs = vec![0u64; graph.buffers.len()];
        if self.checked {
            for (k, b) in graph.buffers.iter().enumerate() {
                if b.role != Role::External {
                    let what = format!("allocating {} of the checked {} arena", b.name, self.name);
                    let m = alloc(b.bytes().max(1), &what)?;
                    ptrs[k] = addr(&m);
                    memory.push(m);
                }
            }
        } else {
            let what = format!("allocating the {} arena", self.name);
            let arena = alloc(plan.arena_bytes.max(256), &what)?;
            let base = addr(&arena);
            memory.push(arena);
            for (k, b) in graph.buffers.iter().enumerate() {
                if b.role != Role::External {
                    ptrs[k] = base + plan.offsets[k] as u64;
                }
            }
        }
        let buffers = graph
            .buffers
            .iter()
            .zip(ptrs)
            .map(|(b, ptr)| Resolved {
                ptr,
                len: b.len,
                dtype: b.dtype,
            })
            .collect();
        let weights = graph
            .weights
            .entries
            .iter()
            .map(|w| {
                Ok(Resolved {
                    ptr: self.weights.address(&w.name, w.dtype, w.len)?,
                    len: w.len,
                    dtype: w.dtype,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Bound {
            graph,
            plan,
            exec: None,
            _memory: memory,
            buffers,
            weights,
        })
    }

    /// A view of buffer `b` of a bound schedule, for copying inputs in and outputs out;
    /// `T` must have the buffer's element size. Views must not outlive the `with` call.
    pub fn view<T>(&self, st: &Bound<O>, b: BufId) -> Result<DevView<T>> {
        let name = &st.graph.get(b).name;
        st.buffers[b.0].view(name, self.gpu.stream())
    }

    /// Binds external buffer `b` to `len` elements at device address `ptr`. A new address
    /// drops the captured graph, which baked the old one in.
    ///
    /// # Safety
    /// `ptr` must address `len` elements of the buffer's dtype on this executor's device,
    /// alive and not written by anyone else while this state may run (until it is bound
    /// to another address or the executor is dropped).
    pub unsafe fn bind_external(
        &self,
        st: &mut Bound<O>,
        b: BufId,
        ptr: u64,
        len: usize,
    ) -> Result<()> {
        let buf = st.graph.get(b);
        if buf.role != Role::External || len != buf.len || ptr == 0 {
            return Err(Error::Cuda(format!(
                "binding {} ({:?}, {} elements) to {len} external elements at {ptr:#x}",
                buf.name, buf.role, buf.len
            )));
        }
        if st.buffers[b.0].ptr != ptr {
            st.buffers[b.0].ptr = ptr;
            st.exec = None;
        }
        Ok(())
    }

    fn cx<'a>(&'a self, st: &'a Bound<O>) -> LaunchCx<'a> {
        LaunchCx {
            gpu: &self.gpu,
            stream: self.gpu.stream(),
            buffers: &st.buffers,
            weights: &st.weights,
        }
    }

    fn check_bound(st: &Bound<O>) -> Result<()> {
        match st
            .graph
            .buffers
            .iter()
            .zip(&st.buffers)
            .find(|(b, a)| b.role == Role::External && a.ptr == 0)
        {
            Some((b, _)) => Err(Error::Cuda(format!(
                "external buffer {} is not bound",
                b.name
            ))),
            None => Ok(()),
        }
    }

    /// Launches node `k` on the stream, errors naming the node (callers check the external
    /// buffers are bound first).
    fn run_node(&self, st: &Bound<O>, k: usize) -> Result<()> {
        let node = &st.graph.nodes[k];
        node.op
            .launch(&self.cx(st))
            .map_err(|e| Error::Cuda(format!("{} ({}): {e}", node.label, node.op.entry_point())))
    }

    fn run_nodes(&self, st: &Bound<O>) -> Result<()> {
        (0..st.graph.nodes.len()).try_for_each(|k| self.run_node(st, k))
    }

    /// Runs the schedule: replays its CUDA graph, capturing it on first use.
    pub fn run(&self, st: &mut Bound<O>) -> Result<()> {
        Self::check_bound(st)?;
        if !self.use_graphs {
            return self.run_nodes(st);
        }
        if st.exec.is_none() {
            let stream = self.gpu.stream();
            guarded("beginning CUDA graph capture", || {
                stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            })?;
            let r = self.run_nodes(st);
            let g = guarded("ending CUDA graph capture", || {
                stream.end_capture(CUgraphInstantiate_flags(0))
            });
            r?;
            let graph =
                g?.ok_or_else(|| Error::Cuda("CUDA graph capture produced no graph".into()))?;
            st.exec = Some(CapturedGraph(graph));
        }
        let exec = st.exec.as_ref().expect("captured above");
        let what = format!("launching the {} CUDA graph", self.name);
        guarded(&what, || exec.0.launch())
    }

    /// Device time of whole runs (graph replays), with CUDA events around each: one value
    /// per iteration, in ms.
    pub fn time_runs(&self, st: &mut Bound<O>, iters: usize) -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(iters.max(1));
        for _ in 0..iters.max(1) {
            times.push(self.time_once(|| self.run(st))?);
        }
        Ok(times)
    }

    /// Device time of each node, launched eagerly with an event pair around each, in
    /// schedule order.
    pub fn time_nodes(&self, st: &Bound<O>, iters: usize) -> Result<Vec<NodeTime>> {
        Self::check_bound(st)?;
        let mut out = Vec::with_capacity(st.graph.nodes.len());
        for (k, node) in st.graph.nodes.iter().enumerate() {
            let mut t = (0..iters.max(1))
                .map(|_| self.time_once(|| self.run_node(st, k)))
                .collect::<Result<Vec<f64>>>()?;
            t.sort_by(f64::total_cmp);
            out.push(NodeTime {
                op: node.op.name(),
                entry_point: node.op.entry_point(),
                label: node.label.clone(),
                median_ms: t[t.len() / 2],
            });
        }
        Ok(out)
    }

    /// Runs each node once, eagerly, and calls `after(k)` when node `k` has finished on the
    /// device: what the device recorded meanwhile (vgpu's counters) belongs to that node.
    pub fn run_each_node(
        &self,
        st: &Bound<O>,
        mut after: impl FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        Self::check_bound(st)?;
        for k in 0..st.graph.nodes.len() {
            self.run_node(st, k)?;
            self.gpu.synchronize(self.gpu.stream())?;
            after(k)?;
        }
        Ok(())
    }

    fn time_once(&self, f: impl FnOnce() -> Result<()>) -> Result<f64> {
        let ctx = self.gpu.context();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = guarded("creating a CUDA event", || ctx.new_event(flags))?;
        let end = guarded("creating a CUDA event", || ctx.new_event(flags))?;
        let stream = self.gpu.stream();
        guarded("recording a CUDA event", || start.record(stream))?;
        f()?;
        guarded("recording a CUDA event", || end.record(stream))?;
        guarded("waiting for a CUDA event", || end.synchronize())?;
        Ok(guarded("reading CUDA event times", || start.elapsed_ms(&end))? as f64)
    }
}
