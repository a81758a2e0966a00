//! The thread-local last error and the guard every entry point runs its body in.
//!
//! A panic must not unwind into C (undefined behaviour, in practice an abort of the host
//! process), so each body runs under `catch_unwind`; a panic becomes -1 and a message like
//! any other error. The message lives in a thread-local so that threads sharing a model
//! never read each other's errors.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a failing body reports: the message returned by `samrt_last_error`.
pub type Result<T> = std::result::Result<T, String>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `msg` as this thread's last error. NUL bytes (which C could not print past) become
/// spaces. During thread teardown the thread-local may be gone; the message is then dropped
/// rather than panicking.
pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// This thread's last error; valid until the next failing call on this thread.
pub fn last_error_ptr() -> *const c_char {
    // The buffer outlives the borrow: it is replaced only by `set_last_error` on this thread.
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs an entry point's body: 0 on success; -1 with "`what`: message" as the last error on
/// failure or panic.
pub fn guard(what: &str, body: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            set_last_error(&format!("{what}: {msg}"));
            -1
        }
        Err(payload) => {
            set_last_error(&format!(
                "{what}: internal error: {}",
                panic_text(&*payload)
            ));
            -1
        }
    }
}

/// [`guard`] for the `void` entry points (the frees): a failure can only be reported through
/// the last error.
pub fn guard_void(what: &str, body: impl FnOnce() -> Result<()>) {
    let _ = guard(what, body);
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("{text} (a bug in samrt; please report it)")
}

/// A C string argument as a Rust string; `name` says which argument is NULL or not UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub unsafe fn c_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(format!("{name} is NULL"));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| format!("{name} is not valid UTF-8"))
}

/// `n` values at `p`: an error for NULL (unless `n` is 0) or a misaligned pointer, which
/// would be undefined behaviour to read as `T`s (and an abort under debug assertions).
///
/// # Safety
/// `p` is NULL or points to `n` readable `T`s.
pub unsafe fn slice<'a, T>(p: *const T, n: usize, name: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        let values = samrt_core::error::count(n, "value");
        return Err(format!("{name} is NULL but must hold {values}"));
    }
    if !p.is_aligned() {
        return Err(format!(
            "{name} ({p:p}) is not aligned to {} bytes",
            std::mem::align_of::<T>()
        ));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// `p` as a reference, or an error naming the NULL argument.
///
/// # Safety
/// `p` is NULL or points to a valid `T`.
pub unsafe fn non_null<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    p.as_ref().ok_or_else(|| format!("{name} is NULL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_minus_one_and_a_message() {
        let rc = guard("samrt_test", || panic!("boom"));
        assert_eq!(rc, -1);
        let msg = last_error();
        assert!(msg.starts_with("samrt_test: internal error: boom"), "{msg}");
        assert_eq!(guard("samrt_test", || Ok(())), 0);
        assert_eq!(last_error(), msg, "success leaves the last error");
        let formatted = guard("samrt_test", || panic!("{}", 7));
        assert_eq!((formatted, last_error().contains(": 7 (")), (-1, true));
    }

    #[test]
    fn slices_refuse_null_and_misaligned_pointers() {
        let v = [1.0f32, 2.0, 3.0];
        let misaligned = unsafe { (v.as_ptr() as *const u8).add(1) } as *const f32;
        let err = unsafe { slice(misaligned, 2, "box") }.unwrap_err();
        assert!(err.contains("not aligned to 4 bytes"), "{err}");
        let err = unsafe { slice(std::ptr::null::<f32>(), 4, "box") }.unwrap_err();
        assert_eq!(err, "box is NULL but must hold 4 values");
        let err = unsafe { slice(std::ptr::null::<f32>(), 1, "points") }.unwrap_err();
        assert_eq!(err, "points is NULL but must hold 1 value");
        assert_eq!(unsafe { slice(v.as_ptr(), 3, "box") }.unwrap(), &v);
        assert!(unsafe { slice(std::ptr::null::<f32>(), 0, "box") }
            .unwrap()
            .is_empty());
    }
}
