//! Graph nodes, graphs (from stream capture) and their executable instances.
//!
//! A node is one unit of stream work: kernel launch, copy, memset, host callback, free or a
//! child graph. Direct calls execute a node at once; a capturing stream records it. A kernel
//! node holds the packed parameter buffer copied at capture time; copy nodes hold pointers,
//! so host memory is read (or written) at replay, as on the real driver. Every device range
//! is checked against the live allocations again at replay (memory freed since the capture is
//! CUDA_ERROR_INVALID_VALUE, not a host crash).

use std::ffi::{c_uint, c_void};
use std::sync::Arc;

use super::capture::{issue, Target};
use super::error::*;
use super::memory::{free_device, release_device};
use super::module::{run_kernel, Function};
use super::state::*;
use super::stream::CUstream;
use crate::sim::LaunchConfig;

pub type CUgraph = *mut c_void;
pub type CUgraphExec = *mut c_void;
pub type CUgraphNode = *mut c_void;

/// Which side of a copy is device memory (`Unified`: decided by the memory table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyKind {
    HtoD,
    DtoH,
    DtoD,
    Unified,
}

pub(crate) enum Node {
    Kernel {
        func: Arc<Function>,
        cfg: LaunchConfig,
        params: Vec<u8>,
    },
    Copy {
        dst: u64,
        src: u64,
        bytes: u64,
        kind: CopyKind,
    },
    Set {
        dst: u64,
        value: u32,
        elem: u8,
        count: u64,
    },
    Host {
        f: unsafe extern "C" fn(*mut c_void),
        data: usize,
    },
    Free {
        addr: u64,
    },
    Child(Arc<[Node]>),
}

fn is_device(addr: u64) -> bool {
    global_mem().find(addr, 1).is_some()
}

/// A device range must lie inside one live allocation.
fn check_device(addr: u64, len: u64) -> Res {
    match global_mem().find(addr, len) {
        Some(_) => Ok(()),
        None => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

impl Node {
    /// Argument checks done when the work is issued and again before it executes.
    pub fn validate(&self) -> Res {
        match *self {
            Node::Copy {
                dst,
                src,
                bytes,
                kind,
            } => {
                if bytes == 0 {
                    return Ok(());
                }
                let (dst_dev, src_dev) = match kind {
                    CopyKind::HtoD => (true, false),
                    CopyKind::DtoH => (false, true),
                    CopyKind::DtoD => (true, true),
                    CopyKind::Unified => (is_device(dst), is_device(src)),
                };
                for (addr, dev) in [(dst, dst_dev), (src, src_dev)] {
                    if dev {
                        check_device(addr, bytes)?;
                    } else if addr == 0 {
                        return Err(CUDA_ERROR_INVALID_VALUE);
                    }
                }
                Ok(())
            }
            Node::Set {
                dst, elem, count, ..
            } => {
                if count == 0 {
                    return Ok(());
                }
                if dst % elem as u64 != 0 {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                let len = count
                    .checked_mul(elem as u64)
                    .ok_or(CUDA_ERROR_INVALID_VALUE)?;
                check_device(dst, len)
            }
            Node::Kernel { .. } | Node::Host { .. } | Node::Free { .. } | Node::Child(_) => Ok(()),
        }
    }

    /// Performs the work on the calling thread.
    pub fn execute(&self) -> Res {
        match self {
            Node::Kernel { func, cfg, params } => run_kernel(func, cfg, params),
            Node::Copy {
                dst, src, bytes, ..
            } => {
                let _g = gate_read();
                self.validate()?;
                // SAFETY: device sides were checked against live allocations under the gate
                // (no free can run now); host sides are the caller's buffers, as with the real
                // driver. `copy` tolerates overlap.
                unsafe { std::ptr::copy(*src as *const u8, *dst as *mut u8, *bytes as usize) };
                // Initcheck: the destination holds what the source held, written or not.
                global_mem().copy_written(*dst, *src, *bytes);
                Ok(())
            }
            Node::Set {
                dst,
                value,
                elem,
                count,
            } => {
                let _g = gate_read();
                self.validate()?;
                let n = *count as usize;
                // SAFETY: [dst, dst + count * elem) lies in a live allocation (checked above)
                // and dst is aligned to elem.
                unsafe {
                    match elem {
                        1 => std::ptr::write_bytes(*dst as *mut u8, *value as u8, n),
                        2 => {
                            std::slice::from_raw_parts_mut(*dst as *mut u16, n).fill(*value as u16)
                        }
                        _ => std::slice::from_raw_parts_mut(*dst as *mut u32, n).fill(*value),
                    }
                }
                global_mem().mark_written(*dst, *count * *elem as u64);
                Ok(())
            }
            // SAFETY: the callback and its data are the caller's (cuLaunchHostFunc contract).
            Node::Host { f, data } => {
                unsafe { f(*data as *mut c_void) };
                Ok(())
            }
            Node::Free { addr } => free_device(*addr),
            Node::Child(nodes) => run_nodes(nodes),
        }
    }

    /// CUgraphNodeType of the node.
    fn type_code(&self) -> c_uint {
        match self {
            Node::Kernel { .. } => 0,
            Node::Copy { .. } => 1,
            Node::Set { .. } => 2,
            Node::Host { .. } => 3,
            Node::Child(_) => 4,
            Node::Free { .. } => 11,
        }
    }
}

pub(crate) fn run_nodes(nodes: &[Node]) -> Res {
    nodes.iter().try_for_each(Node::execute)
}

/// Device memory allocated and freed within a capture: it belongs to the graph and its
/// instances, keeps its address for every replay, and is freed with the last of them.
#[derive(Default)]
pub(crate) struct GraphMem(pub Vec<u64>);

impl GraphMem {
    pub fn push(&mut self, addr: u64) {
        self.0.push(addr);
    }
}

impl Drop for GraphMem {
    fn drop(&mut self) {
        for &a in &self.0 {
            release_device(a);
        }
    }
}

pub(crate) struct Graph {
    pub nodes: Arc<[Node]>,
    pub mem: Arc<GraphMem>,
}

pub(crate) struct Exec {
    nodes: Arc<[Node]>,
    _mem: Arc<GraphMem>,
    flags: u64,
}

/// CUDA_GRAPH_INSTANTIATE_FLAG_{AUTO_FREE_ON_LAUNCH, UPLOAD, DEVICE_LAUNCH, USE_NODE_PRIORITY}.
const INSTANTIATE_FLAGS: u64 = 1 | 2 | 4 | 8;

/// Flags are checked as the driver does (device launch cannot be combined with auto-free)
/// and otherwise have no effect.
#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    ph_exec: *mut CUgraphExec,
    h_graph: CUgraph,
    flags: u64,
) -> CUresult {
    guard_ctx(|| {
        nonnull(ph_exec)?;
        nonnull(h_graph)?;
        if flags & !INSTANTIATE_FLAGS != 0 || flags & 5 == 5 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        let g = st
            .graphs
            .get(&from_handle(h_graph))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let exec = Exec {
            nodes: g.nodes.clone(),
            _mem: g.mem.clone(),
            flags,
        };
        let id = st.new_id();
        st.execs.insert(id, exec);
        unsafe { put(ph_exec, to_handle(id)) }
    })
}

/// Replays the instance's nodes in order on the calling thread; launched into a capturing
/// stream it becomes a child-graph node.
#[no_mangle]
pub unsafe extern "C" fn cuGraphLaunch(h_exec: CUgraphExec, h_stream: CUstream) -> CUresult {
    guard_ctx(|| {
        let nodes = {
            let mut st = state();
            let nodes = st
                .execs
                .get(&from_handle(h_exec))
                .ok_or(CUDA_ERROR_INVALID_HANDLE)?
                .nodes
                .clone();
            if let Target::Capture(sid) = issue(&mut st, h_stream)? {
                st.sessions
                    .get_mut(&sid)
                    .ok_or(CUDA_ERROR_UNKNOWN)?
                    .nodes
                    .push(Node::Child(nodes));
                return Ok(());
            }
            nodes
        };
        run_nodes(&nodes)
    })
}

/// Nothing to upload: checks the handles.
#[no_mangle]
pub unsafe extern "C" fn cuGraphUpload(h_exec: CUgraphExec, h_stream: CUstream) -> CUresult {
    guard_ctx(|| {
        let mut st = state();
        st.execs
            .get(&from_handle(h_exec))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        super::stream::resolve(&mut st, h_stream)?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphExecGetFlags(h_exec: CUgraphExec, flags: *mut u64) -> CUresult {
    guard_ctx(|| {
        let f = state()
            .execs
            .get(&from_handle(h_exec))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?
            .flags;
        unsafe { put(flags, f) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphExecDestroy(h_exec: CUgraphExec) -> CUresult {
    guard_ctx(|| {
        nonnull(h_exec)?;
        let removed = state().execs.remove(&from_handle(h_exec));
        removed.map(drop).ok_or(CUDA_ERROR_INVALID_HANDLE)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphDestroy(h_graph: CUgraph) -> CUresult {
    guard_ctx(|| {
        nonnull(h_graph)?;
        let removed = state().graphs.remove(&from_handle(h_graph));
        removed.map(drop).ok_or(CUDA_ERROR_INVALID_HANDLE)
    })
}

/// Node handles encode (graph handle, index + 1); only cuGraphNodeGetType reads them.
fn node_handle(graph: u64, index: usize) -> u64 {
    (graph << 20) | (index as u64 + 1)
}

/// With `nodes` NULL, the node count; else up to `*num_nodes` handles (the rest NULL) and
/// the number written.
#[no_mangle]
pub unsafe extern "C" fn cuGraphGetNodes(
    h_graph: CUgraph,
    nodes: *mut CUgraphNode,
    num_nodes: *mut usize,
) -> CUresult {
    guard_ctx(|| {
        nonnull(num_nodes)?;
        let gid = from_handle(h_graph);
        let n = state()
            .graphs
            .get(&gid)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?
            .nodes
            .len();
        if nodes.is_null() {
            return unsafe { put(num_nodes, n) };
        }
        // SAFETY: num_nodes is non-null; `nodes` has room for *num_nodes handles.
        let cap = unsafe { num_nodes.read() };
        for i in 0..cap {
            let h = if i < n {
                to_handle(node_handle(gid, i))
            } else {
                std::ptr::null_mut()
            };
            unsafe { nodes.add(i).write(h) };
        }
        unsafe { put(num_nodes, cap.min(n)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphNodeGetType(h_node: CUgraphNode, ty: *mut c_uint) -> CUresult {
    guard_ctx(|| {
        nonnull(ty)?;
        let h = from_handle(h_node);
        let (gid, idx) = (
            h >> 20,
            (h & 0xF_FFFF)
                .checked_sub(1)
                .ok_or(CUDA_ERROR_INVALID_VALUE)?,
        );
        let st = state();
        let g = st.graphs.get(&gid).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let node = g.nodes.get(idx as usize).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe { put(ty, node.type_code()) }
    })
}
