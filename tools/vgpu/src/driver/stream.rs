//! Streams and events.
//!
//! Every call executes its work before returning, so a stream is a FIFO queue that is always
//! drained: synchronize/query only report errors, and an event is complete as soon as it is
//! recorded (its timestamp is the host `Instant` of the record call). The exception is a
//! capturing stream, whose work is recorded into a graph (see [`super::graph`]); an event
//! recorded there is a "captured event" until the capture ends.
//!
//! Handles 0 (NULL) and `CU_STREAM_LEGACY` name the legacy default stream,
//! `CU_STREAM_PER_THREAD` the calling thread's own default stream.

use std::ffi::{c_int, c_uint, c_ulonglong, c_void};
use std::time::Instant;

use super::capture::{
    captured_session, check_legacy, end_session, invalidate, record_event_capture, submit,
    wait_event_capture,
};
use super::context::{CUcontext, CUdevice};
use super::error::*;
use super::graph::Node;
use super::state::*;

pub type CUstream = *mut c_void;
pub type CUevent = *mut c_void;

const CU_STREAM_NON_BLOCKING: c_uint = 0x1;
const CU_EVENT_DISABLE_TIMING: c_uint = 0x2;
const CU_EVENT_INTERPROCESS: c_uint = 0x4;

pub(crate) struct StreamInfo {
    pub flags: c_uint,
    pub priority: c_int,
    /// The `CU_STREAM_PER_THREAD` stream of some thread (cannot be destroyed).
    pub per_thread: bool,
}

impl StreamInfo {
    /// Whether the stream synchronizes with the legacy stream (not CU_STREAM_NON_BLOCKING).
    pub fn blocking(&self) -> bool {
        self.flags & CU_STREAM_NON_BLOCKING == 0
    }
}

/// Where an event was last recorded in a capture: session, stream key and the session's
/// operation count at that point.
#[derive(Clone, Copy)]
pub(crate) struct Captured {
    pub session: u64,
    pub stream: u64,
    pub seq: u64,
}

pub(crate) struct EventInfo {
    pub flags: c_uint,
    pub time: Option<Instant>,
    pub captured: Option<Captured>,
}

/// `None` for the legacy stream, else the key of the stream's registry entry (created on
/// first use for this thread's per-thread stream). Unknown handles are
/// CUDA_ERROR_INVALID_HANDLE.
pub(crate) fn resolve(st: &mut State, h: CUstream) -> Res<Option<u64>> {
    match from_handle(h) {
        0 | STREAM_LEGACY => Ok(None),
        STREAM_PER_THREAD => {
            let mut key = PER_THREAD_KEY.with(|k| k.get());
            if key == 0 {
                key = st.new_id();
                PER_THREAD_KEY.with(|k| k.set(key));
            }
            st.streams.entry(key).or_insert(StreamInfo {
                flags: 0,
                priority: 0,
                per_thread: true,
            });
            Ok(Some(key))
        }
        id if st.streams.contains_key(&id) => Ok(Some(id)),
        _ => Err(CUDA_ERROR_INVALID_HANDLE),
    }
}

fn create_stream(ph: *mut CUstream, flags: c_uint, priority: c_int) -> CUresult {
    guard_ctx(|| {
        nonnull(ph)?;
        if flags & !CU_STREAM_NON_BLOCKING != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        let id = st.new_id();
        // Out-of-range priorities are clamped, as the real driver does.
        let priority = priority.clamp(-5, 0);
        st.streams.insert(
            id,
            StreamInfo {
                flags,
                priority,
                per_thread: false,
            },
        );
        unsafe { put(ph, to_handle(id)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(ph_stream: *mut CUstream, flags: c_uint) -> CUresult {
    create_stream(ph_stream, flags, 0)
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    ph_stream: *mut CUstream,
    flags: c_uint,
    priority: c_int,
) -> CUresult {
    create_stream(ph_stream, flags, priority)
}

/// Destroying a capturing stream invalidates (origin: ends) its capture.
#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(h_stream: CUstream) -> CUresult {
    guard_ctx(|| {
        let mut st = state();
        let key = resolve(&mut st, h_stream)?.ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        if st.streams.get(&key).is_some_and(|s| s.per_thread) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        if let Some(sid) = st.capture.remove(&key) {
            let origin = st.sessions.get(&sid).map(|s| s.origin);
            if origin == Some(key) {
                drop(end_session(&mut st, sid));
            } else {
                invalidate(&mut st, sid);
            }
        }
        st.streams.remove(&key);
        Ok(())
    })
}

/// Errors only: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED for a capturing stream (invalidating
/// the capture), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT for the legacy stream while a blocking
/// stream captures.
fn sync_check(h: CUstream) -> Res {
    let mut st = state();
    match resolve(&mut st, h)? {
        Some(key) => match st.capture.get(&key).copied() {
            Some(sid) => {
                invalidate(&mut st, sid);
                Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
            }
            None => Ok(()),
        },
        None => check_legacy(&mut st),
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamSynchronize(h_stream: CUstream) -> CUresult {
    guard_ctx(|| sync_check(h_stream))
}

/// Always CUDA_SUCCESS (never CUDA_ERROR_NOT_READY): all work is already done.
#[no_mangle]
pub unsafe extern "C" fn cuStreamQuery(h_stream: CUstream) -> CUresult {
    guard_ctx(|| sync_check(h_stream))
}

/// Waiting on an event never blocks. During capture it joins the waiting stream to the
/// capture the event was recorded in (fork/join); a wait on an event recorded outside any
/// capture adds no dependency.
#[no_mangle]
pub unsafe extern "C" fn cuStreamWaitEvent(
    h_stream: CUstream,
    h_event: CUevent,
    flags: c_uint,
) -> CUresult {
    guard_ctx(|| {
        if flags > 1 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        let stream = resolve(&mut st, h_stream)?;
        let ev = st
            .events
            .get(&from_handle(h_event))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let captured = ev.captured;
        wait_event_capture(&mut st, stream, captured, flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetFlags(h_stream: CUstream, flags: *mut c_uint) -> CUresult {
    guard_ctx(|| {
        nonnull(flags)?;
        let mut st = state();
        let f = match resolve(&mut st, h_stream)? {
            Some(k) => st.streams[&k].flags,
            None => 0,
        };
        unsafe { put(flags, f) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetPriority(h_stream: CUstream, priority: *mut c_int) -> CUresult {
    guard_ctx(|| {
        nonnull(priority)?;
        let mut st = state();
        let p = match resolve(&mut st, h_stream)? {
            Some(k) => st.streams[&k].priority,
            None => 0,
        };
        unsafe { put(priority, p) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetId(h_stream: CUstream, id: *mut c_ulonglong) -> CUresult {
    guard_ctx(|| {
        nonnull(id)?;
        let key = resolve(&mut state(), h_stream)?.unwrap_or(0);
        unsafe { put(id, key) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCtx(h_stream: CUstream, pctx: *mut CUcontext) -> CUresult {
    guard_ctx(|| {
        nonnull(pctx)?;
        resolve(&mut state(), h_stream)?;
        unsafe { put(pctx, to_handle(PRIMARY_CTX)) }
    })
}

/// No green contexts: `*p_green_ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCtx_v2(
    h_stream: CUstream,
    pctx: *mut CUcontext,
    p_green_ctx: *mut *mut c_void,
) -> CUresult {
    match unsafe { cuStreamGetCtx(h_stream, pctx) } {
        CUDA_SUCCESS => guard_ctx(|| unsafe { put(p_green_ctx, std::ptr::null_mut()) }),
        e => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetDevice(h_stream: CUstream, device: *mut CUdevice) -> CUresult {
    guard_ctx(|| {
        nonnull(device)?;
        resolve(&mut state(), h_stream)?;
        unsafe { put(device, 0) }
    })
}

/// Host callback: runs at once on the calling thread, or becomes a host node during capture.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchHostFunc(
    h_stream: CUstream,
    f: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
) -> CUresult {
    guard_ctx(|| {
        let f = f.ok_or(CUDA_ERROR_INVALID_VALUE)?;
        submit(
            h_stream,
            Node::Host {
                f,
                data: user_data as usize,
            },
        )
    })
}

// ---------------------------------------------------------------------------------- events

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(ph_event: *mut CUevent, flags: c_uint) -> CUresult {
    guard_ctx(|| {
        nonnull(ph_event)?;
        let interprocess_ok =
            flags & CU_EVENT_INTERPROCESS == 0 || flags & CU_EVENT_DISABLE_TIMING != 0;
        if flags & !0x7 != 0 || !interprocess_ok {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        let id = st.new_id();
        st.events.insert(
            id,
            EventInfo {
                flags,
                time: None,
                captured: None,
            },
        );
        unsafe { put(ph_event, to_handle(id)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(h_event: CUevent) -> CUresult {
    guard_ctx(|| match state().events.remove(&from_handle(h_event)) {
        Some(_) => Ok(()),
        None => Err(CUDA_ERROR_INVALID_HANDLE),
    })
}

/// Outside capture: the event completes now (timestamp = now). In a capturing stream: the
/// event becomes a captured event of that capture (used to join forked streams).
#[no_mangle]
pub unsafe extern "C" fn cuEventRecord(h_event: CUevent, h_stream: CUstream) -> CUresult {
    guard_ctx(|| {
        let mut st = state();
        let id = from_handle(h_event);
        if !st.events.contains_key(&id) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let stream = resolve(&mut st, h_stream)?;
        let captured = record_event_capture(&mut st, stream)?;
        let ev = st.events.get_mut(&id).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        ev.captured = captured;
        if captured.is_none() {
            ev.time = Some(Instant::now());
        }
        Ok(())
    })
}

/// `flags` (CU_EVENT_RECORD_EXTERNAL) only matter to graphs with event nodes; ignored.
#[no_mangle]
pub unsafe extern "C" fn cuEventRecordWithFlags(
    h_event: CUevent,
    h_stream: CUstream,
    flags: c_uint,
) -> CUresult {
    if flags > 1 {
        return guard_ctx(|| Err(CUDA_ERROR_INVALID_VALUE));
    }
    unsafe { cuEventRecord(h_event, h_stream) }
}

/// CUDA_ERROR_CAPTURED_EVENT (and the capture invalidated) for an event recorded in a
/// capture still in progress; success otherwise.
fn event_ready(h_event: CUevent) -> Res {
    let mut st = state();
    let ev = st
        .events
        .get(&from_handle(h_event))
        .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if let Some(sid) = captured_session(&st, ev) {
        invalidate(&mut st, sid);
        return Err(CUDA_ERROR_CAPTURED_EVENT);
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(h_event: CUevent) -> CUresult {
    guard_ctx(|| event_ready(h_event))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(h_event: CUevent) -> CUresult {
    guard_ctx(|| event_ready(h_event))
}

/// Host time between the two record calls, in ms. CUDA_ERROR_INVALID_HANDLE when either
/// event has CU_EVENT_DISABLE_TIMING (cudarc's default for `new_event(None)`) or was never
/// recorded, as on the real driver.
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(
    ms: *mut f32,
    h_start: CUevent,
    h_end: CUevent,
) -> CUresult {
    guard_ctx(|| {
        nonnull(ms)?;
        let st = state();
        let get = |h: CUevent| {
            st.events
                .get(&from_handle(h))
                .ok_or(CUDA_ERROR_INVALID_HANDLE)
        };
        let (a, b) = (get(h_start)?, get(h_end)?);
        if captured_session(&st, a).is_some() || captured_session(&st, b).is_some() {
            return Err(CUDA_ERROR_CAPTURED_EVENT);
        }
        if (a.flags | b.flags) & CU_EVENT_DISABLE_TIMING != 0 {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let (ta, tb) = (
            a.time.ok_or(CUDA_ERROR_INVALID_HANDLE)?,
            b.time.ok_or(CUDA_ERROR_INVALID_HANDLE)?,
        );
        let v = if tb >= ta {
            (tb - ta).as_secs_f64() * 1e3
        } else {
            -((ta - tb).as_secs_f64() * 1e3)
        };
        unsafe { put(ms, v as f32) }
    })
}

/// The pre-13.0 name of [`cuEventElapsedTime_v2`].
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(
    ms: *mut f32,
    h_start: CUevent,
    h_end: CUevent,
) -> CUresult {
    unsafe { cuEventElapsedTime_v2(ms, h_start, h_end) }
}

/// `sync_mode` does not matter: the callback runs in order either way.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchHostFunc_v2(
    h_stream: CUstream,
    f: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
    _sync_mode: c_uint,
) -> CUresult {
    unsafe { cuLaunchHostFunc(h_stream, f, user_data) }
}
