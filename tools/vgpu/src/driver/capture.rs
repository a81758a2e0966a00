//! Stream capture: while a stream captures, the kernel launches, copies, memsets and host
//! callbacks issued to it are recorded as graph nodes instead of executed.
//!
//! A capture session starts at cuStreamBeginCapture_v2 on its origin stream. Other streams
//! join it by waiting on an event recorded in it (fork) and must be joined back (an event
//! recorded on them after their last work, waited on by another member) before
//! cuStreamEndCapture, else CUDA_ERROR_STREAM_CAPTURE_UNJOINED. Replay is in issue order,
//! which respects every dependency the capture expressed.
//!
//! Capture safety follows the driver's rules as far as they are simple to state: while a
//! capture forbids it (cuThreadExchangeStreamCaptureMode semantics), a "potentially unsafe"
//! call (cuMemAlloc_v2, cuMemFree_v2, synchronous copies/memsets, cuCtxSynchronize) fails
//! with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the captures that forbade it;
//! synchronizing or querying a capturing stream does the same; work on the legacy stream while
//! a blocking stream captures fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT; querying an event
//! recorded in a live capture fails with CUDA_ERROR_CAPTURED_EVENT. An invalidated capture
//! rejects further work (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) and ends without a graph.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use super::error::*;
use super::graph::{CUgraph, Graph, GraphMem, Node};
use super::state::*;
use super::stream::{resolve, CUstream, Captured, EventInfo};

const MODE_GLOBAL: u32 = 0;
const MODE_RELAXED: u32 = 2;

/// CU_STREAM_CAPTURE_STATUS_{NONE, ACTIVE, INVALIDATED}.
const STATUS_NONE: u32 = 0;
const STATUS_ACTIVE: u32 = 1;
const STATUS_INVALIDATED: u32 = 2;

#[derive(Default)]
pub(crate) struct Member {
    /// Session operation count at this stream's last captured operation (or its join).
    last_op: u64,
    /// Highest operation count of this stream another member has waited for.
    joined: u64,
}

pub(crate) struct Session {
    pub origin: u64,
    mode: u32,
    owner: ThreadId,
    invalid: bool,
    pub nodes: Vec<Node>,
    /// Allocated during the capture (still owned by the context unless freed in it).
    pub allocs: Vec<u64>,
    /// Allocated and freed during the capture: memory of the graph, like a memory node's.
    pub graph_owned: GraphMem,
    seq: u64,
    members: HashMap<u64, Member>,
}

/// Where issued work goes.
pub(crate) enum Target {
    Now,
    Capture(u64),
}

pub(crate) fn invalidate(st: &mut State, sid: u64) {
    if let Some(s) = st.sessions.get_mut(&sid) {
        s.invalid = true;
    }
}

/// Removes a session and takes its streams out of capture mode.
pub(crate) fn end_session(st: &mut State, sid: u64) -> Option<Session> {
    st.capture.retain(|_, s| *s != sid);
    st.sessions.remove(&sid)
}

/// The live capture an event was last recorded in, if any.
pub(crate) fn captured_session(st: &State, ev: &EventInfo) -> Option<u64> {
    ev.captured
        .map(|c| c.session)
        .filter(|s| st.sessions.contains_key(s))
}

/// CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (invalidating them) when work on the legacy stream
/// would make it depend on a capturing blocking stream.
pub(crate) fn check_legacy(st: &mut State) -> Res {
    let culprits: Vec<u64> = st
        .sessions
        .iter()
        .filter(|(_, s)| {
            s.members
                .keys()
                .any(|k| st.streams.get(k).is_some_and(|i| i.blocking()))
        })
        .map(|(&id, _)| id)
        .collect();
    if culprits.is_empty() {
        return Ok(());
    }
    for sid in culprits {
        invalidate(st, sid);
    }
    Err(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT)
}

/// Fails a potentially unsafe call while a capture forbids it to this thread, invalidating
/// the captures that do.
pub(crate) fn check_unsafe_call(st: &mut State) -> Res {
    let mode = CAPTURE_MODE.with(|m| m.get());
    if mode == MODE_RELAXED || st.sessions.is_empty() {
        return Ok(());
    }
    let me = thread::current().id();
    let culprits: Vec<u64> = st
        .sessions
        .iter()
        .filter(|(_, s)| {
            (s.owner == me && s.mode != MODE_RELAXED)
                || (mode == MODE_GLOBAL && s.owner != me && s.mode == MODE_GLOBAL)
        })
        .map(|(&id, _)| id)
        .collect();
    if culprits.is_empty() {
        return Ok(());
    }
    for sid in culprits {
        invalidate(st, sid);
    }
    Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
}

/// Decides whether work issued to `stream` runs now or is recorded, counting it as the
/// stream's latest operation in its capture.
pub(crate) fn issue(st: &mut State, stream: CUstream) -> Res<Target> {
    let Some(key) = resolve(st, stream)? else {
        check_legacy(st)?;
        return Ok(Target::Now);
    };
    let Some(&sid) = st.capture.get(&key) else {
        return Ok(Target::Now);
    };
    let s = st.sessions.get_mut(&sid).ok_or(CUDA_ERROR_UNKNOWN)?;
    if s.invalid {
        return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    }
    s.seq += 1;
    s.members.entry(key).or_default().last_op = s.seq;
    Ok(Target::Capture(sid))
}

/// Validates `node`, then executes it or records it into the stream's capture.
pub(crate) fn submit(stream: CUstream, node: Node) -> Res {
    node.validate()?;
    {
        let mut st = state();
        if let Target::Capture(sid) = issue(&mut st, stream)? {
            st.sessions
                .get_mut(&sid)
                .ok_or(CUDA_ERROR_UNKNOWN)?
                .nodes
                .push(node);
            return Ok(());
        }
    }
    node.execute()
}

/// cuEventRecord on `stream`: the capture position the event stands for, if it captures.
pub(crate) fn record_event_capture(st: &mut State, stream: Option<u64>) -> Res<Option<Captured>> {
    let Some(key) = stream else {
        check_legacy(st)?;
        return Ok(None);
    };
    let Some(&sid) = st.capture.get(&key) else {
        return Ok(None);
    };
    let s = st.sessions.get(&sid).ok_or(CUDA_ERROR_UNKNOWN)?;
    if s.invalid {
        return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    }
    Ok(Some(Captured {
        session: sid,
        stream: key,
        seq: s.seq,
    }))
}

/// cuStreamWaitEvent's effect on captures: joins (fork) or marks a member joined back.
pub(crate) fn wait_event_capture(
    st: &mut State,
    stream: Option<u64>,
    captured: Option<Captured>,
    flags: c_uint,
) -> Res {
    let waiting = stream.and_then(|k| st.capture.get(&k).copied());
    if flags != 0 && waiting.is_none() {
        // CU_EVENT_WAIT_EXTERNAL is only valid during capture.
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let Some(c) = captured.filter(|c| st.sessions.contains_key(&c.session)) else {
        return Ok(());
    };
    let Some(key) = stream else {
        return Err(CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
    };
    match waiting {
        Some(sid) if sid != c.session => Err(CUDA_ERROR_STREAM_CAPTURE_MERGE),
        Some(_) => {
            let s = st.sessions.get_mut(&c.session).ok_or(CUDA_ERROR_UNKNOWN)?;
            if key != c.stream {
                let m = s.members.entry(c.stream).or_default();
                m.joined = m.joined.max(c.seq);
            }
            Ok(())
        }
        None => {
            let s = st.sessions.get_mut(&c.session).ok_or(CUDA_ERROR_UNKNOWN)?;
            s.seq += 1;
            let seq = s.seq;
            s.members.insert(
                key,
                Member {
                    last_op: seq,
                    joined: 0,
                },
            );
            st.capture.insert(key, c.session);
            Ok(())
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamBeginCapture_v2(h_stream: CUstream, mode: c_uint) -> CUresult {
    guard_ctx(|| {
        if mode > MODE_RELAXED {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        let key = resolve(&mut st, h_stream)?.ok_or(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)?;
        if st.capture.contains_key(&key) {
            return Err(CUDA_ERROR_ILLEGAL_STATE);
        }
        let sid = st.new_id();
        let mut members = HashMap::new();
        members.insert(key, Member::default());
        st.sessions.insert(
            sid,
            Session {
                origin: key,
                mode,
                owner: thread::current().id(),
                invalid: false,
                nodes: Vec::new(),
                allocs: Vec::new(),
                graph_owned: GraphMem::default(),
                seq: 0,
                members,
            },
        );
        st.capture.insert(key, sid);
        Ok(())
    })
}

/// Ends the capture begun on `h_stream` and returns its graph. The capture ends even when
/// this fails (invalidated, unjoined streams); `*ph_graph` is then NULL.
#[no_mangle]
pub unsafe extern "C" fn cuStreamEndCapture(
    h_stream: CUstream,
    ph_graph: *mut CUgraph,
) -> CUresult {
    guard_ctx(|| {
        nonnull(ph_graph)?;
        let mut st = state();
        let key = resolve(&mut st, h_stream)?.ok_or(CUDA_ERROR_ILLEGAL_STATE)?;
        let sid = *st.capture.get(&key).ok_or(CUDA_ERROR_ILLEGAL_STATE)?;
        let s = st.sessions.get(&sid).ok_or(CUDA_ERROR_UNKNOWN)?;
        if s.origin != key {
            return Err(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED);
        }
        if s.mode != MODE_RELAXED && s.owner != thread::current().id() {
            return Err(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
        }
        let s = end_session(&mut st, sid).ok_or(CUDA_ERROR_UNKNOWN)?;
        unsafe { put(ph_graph, std::ptr::null_mut())? };
        if s.invalid {
            return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
        }
        let unjoined = s
            .members
            .iter()
            .any(|(&k, m)| k != s.origin && m.joined < m.last_op);
        if unjoined {
            return Err(CUDA_ERROR_STREAM_CAPTURE_UNJOINED);
        }
        let id = st.new_id();
        let graph = Graph {
            nodes: s.nodes.into(),
            mem: Arc::new(s.graph_owned),
        };
        st.graphs.insert(id, graph);
        unsafe { put(ph_graph, to_handle(id)) }
    })
}

fn capture_status(h_stream: CUstream) -> Res<(u32, u64)> {
    let mut st = state();
    let Some(key) = resolve(&mut st, h_stream)? else {
        check_legacy(&mut st)?;
        return Ok((STATUS_NONE, 0));
    };
    Ok(match st.capture.get(&key) {
        None => (STATUS_NONE, 0),
        Some(&sid) if st.sessions.get(&sid).is_some_and(|s| s.invalid) => (STATUS_INVALIDATED, sid),
        Some(&sid) => (STATUS_ACTIVE, sid),
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(h_stream: CUstream, status: *mut c_uint) -> CUresult {
    guard_ctx(|| {
        nonnull(status)?;
        let (s, _) = capture_status(h_stream)?;
        unsafe { put(status, s) }
    })
}

/// Status and capture id; the graph under construction and the dependency set are not
/// exposed (NULL / 0).
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo_v3(
    h_stream: CUstream,
    status: *mut c_uint,
    id: *mut u64,
    graph: *mut CUgraph,
    deps: *mut *const c_void,
    edge_data: *mut *const c_void,
    num_deps: *mut usize,
) -> CUresult {
    guard_ctx(|| {
        nonnull(status)?;
        let (s, sid) = capture_status(h_stream)?;
        unsafe {
            put(status, s)?;
            if !id.is_null() && s != STATUS_NONE {
                put(id, sid)?;
            }
            if !graph.is_null() && s != STATUS_NONE {
                put(graph, std::ptr::null_mut())?;
            }
            if !deps.is_null() && s != STATUS_NONE {
                put(deps, std::ptr::null())?;
            }
            if !edge_data.is_null() && s != STATUS_NONE {
                put(edge_data, std::ptr::null())?;
            }
            if !num_deps.is_null() && s != STATUS_NONE {
                put(num_deps, 0)?;
            }
        }
        Ok(())
    })
}

/// The CUDA 12 form (no edge data).
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo_v2(
    h_stream: CUstream,
    status: *mut c_uint,
    id: *mut u64,
    graph: *mut CUgraph,
    deps: *mut *const c_void,
    num_deps: *mut usize,
) -> CUresult {
    unsafe {
        cuStreamGetCaptureInfo_v3(
            h_stream,
            status,
            id,
            graph,
            deps,
            std::ptr::null_mut(),
            num_deps,
        )
    }
}

/// Sets this thread's capture interaction mode, returning the previous one in `*mode`.
#[no_mangle]
pub unsafe extern "C" fn cuThreadExchangeStreamCaptureMode(mode: *mut c_uint) -> CUresult {
    guard(|| {
        nonnull(mode)?;
        // SAFETY: non-null, points to the caller's mode.
        let new = unsafe { mode.read() };
        if new > MODE_RELAXED {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let old = CAPTURE_MODE.with(|m| m.replace(new));
        unsafe { put(mode, old) }
    })
}
