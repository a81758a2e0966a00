//! vgpu's counters, as samrt reads them: with `VGPU_PROFILE_FILE=PATH` in the environment,
//! vgpu appends one JSON object per kernel launch to PATH (the format is documented in the
//! README, "Running the CUDA tests without a GPU: vgpu"). A file rather than stderr: stderr
//! mixes the counters with every other message, and a file is read back in launch order
//! at any point, so counters are attributed to the node that just ran.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::h100::Launch;
use crate::{Error, Result};

/// The environment variable vgpu reads at every launch.
pub const PROFILE_FILE_VAR: &str = "VGPU_PROFILE_FILE";

/// Whether a device name is vgpu's (its name starts `vgpu (`).
pub fn is_vgpu(device_name: &str) -> bool {
    device_name.starts_with("vgpu")
}

/// One launch as vgpu recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRecord {
    pub kernel: String,
    pub launch: Launch,
}

/// Parses one line of the file; an error names what is missing or malformed.
pub fn parse_line(line: &str) -> Result<LaunchRecord> {
    let bad = |what: &str| Error::Cuda(format!("vgpu profile record {what}: {line}"));
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(&format!("without a count `{k}`")))
    };
    let dims = |k: &str| -> Result<u64> {
        let d = v
            .get(k)
            .and_then(serde_json::Value::as_array)
            .filter(|a| a.len() == 3)
            .ok_or_else(|| bad(&format!("without 3 dimensions `{k}`")))?;
        d.iter().try_fold(1u64, |p, x| {
            x.as_u64()
                .map(|x| p * x)
                .ok_or_else(|| bad(&format!("with a non-integer `{k}`")))
        })
    };
    let classes = v
        .get("warp_instructions")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| bad("without `warp_instructions`"))?;
    let mut warp_instructions = 0u64;
    let (mut fp_instructions, mut sfu_instructions) = (0u64, 0u64);
    for (class, n) in classes {
        let n = n.as_u64().ok_or_else(|| bad("with a non-integer count"))?;
        warp_instructions += n;
        match class.as_str() {
            "fp16" | "fp32" | "fp64" => fp_instructions += n,
            "sfu" => sfu_instructions += n,
            _ => {}
        }
    }
    let kernel = v
        .get("kernel")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("without `kernel`"))?
        .to_string();
    Ok(LaunchRecord {
        kernel,
        launch: Launch {
            blocks: dims("grid")?,
            threads_per_block: dims("block")?,
            shared_bytes_per_block: num("static_shared_bytes")? + num("dynamic_shared_bytes")?,
            warp_instructions,
            fp_instructions,
            sfu_instructions,
            mma: num("mma")?,
            mma_flops: num("mma_flops")?,
            // Absent from files written before vgpu counted it apart: no wgmma then.
            wgmma_flops: match v.get("wgmma_flops") {
                None => 0,
                Some(_) => num("wgmma_flops")?,
            },
            global_bytes_read: num("global_bytes_read")?,
            global_bytes_written: num("global_bytes_written")?,
            shared_requests: num("shared_requests")?,
            shared_wavefronts: num("shared_wavefronts")?,
            bank_conflicts: num("bank_conflicts")?,
        },
    })
}

/// The environment is the process's: one recording at a time.
static RECORDING: Mutex<()> = Mutex::new(());

/// Launch records while it lives: sets `VGPU_PROFILE_FILE` to a fresh file and, when
/// dropped, restores the variable and removes the file.
pub struct Recording {
    path: PathBuf,
    read_to: u64,
    previous: Option<OsString>,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Recording {
    /// Starts recording. Launches of other threads in this process land in the file too,
    /// so the caller runs nothing else on the device meanwhile.
    pub fn start() -> Result<Self> {
        let one = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
        let path = std::env::temp_dir().join(format!(
            "samrt-vgpu-profile-{}-{:x}.jsonl",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::write(&path, b"").map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let previous = std::env::var_os(PROFILE_FILE_VAR);
        std::env::set_var(PROFILE_FILE_VAR, &path);
        Ok(Recording {
            path,
            read_to: 0,
            previous,
            _one: one,
        })
    }

    /// The records appended since the last call, in launch order.
    pub fn take(&mut self) -> Result<Vec<LaunchRecord>> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = std::fs::File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(self.read_to)).map_err(io)?;
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(io)?;
        // Only whole lines: vgpu writes each with one append, newline included.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.read_to += whole as u64;
        text[..whole].lines().map(parse_line).collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        match &self.previous {
            Some(v) => std::env::set_var(PROFILE_FILE_VAR, v),
            None => std::env::remove_var(PROFILE_FILE_VAR),
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"kernel":"gemm_bias_f16","grid":[18,2,1],"block":[256,1,1],"static_shared_bytes":0,"dynamic_shared_bytes":73728,"registers":255,"warp_instructions":{"control":10,"fp32":100,"fp16":5,"sfu":7,"mma":221184},"mma":221184,"mma_flops":905969664,"global_bytes_read":14450000,"global_bytes_written":1180000,"shared_requests":110592,"shared_wavefronts":442368,"bank_conflicts":0}"#;

    #[test]
    fn a_vgpu_line_parses_into_a_launch() {
        let r = parse_line(LINE).unwrap();
        assert_eq!(r.kernel, "gemm_bias_f16");
        let l = r.launch;
        assert_eq!((l.blocks, l.threads_per_block), (36, 256));
        assert_eq!(l.shared_bytes_per_block, 73728);
        assert_eq!((l.warp_instructions, l.fp_instructions), (221_306, 105));
        assert_eq!(l.sfu_instructions, 7);
        assert_eq!((l.mma, l.mma_flops), (221_184, 905_969_664));
        assert_eq!(l.wgmma_flops, 0, "a line without the field did no wgmma");
        let wg = LINE.replace(
            "\"mma_flops\":905969664",
            "\"mma_flops\":905969664,\"wgmma_flops\":8192",
        );
        assert_eq!(parse_line(&wg).unwrap().launch.wgmma_flops, 8192);
        assert!(parse_line(&wg.replace("8192", "\"x\"")).is_err());
        assert_eq!(l.flops(), 905_969_664 + 32 * 105);
        assert_eq!((l.shared_wavefronts, l.bank_conflicts), (442_368, 0));
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_field() {
        let e = parse_line(&LINE.replace("\"mma_flops\"", "\"x\"")).unwrap_err();
        assert!(e.to_string().contains("mma_flops"), "{e}");
        let e = parse_line(&LINE.replace("[18,2,1]", "[18,2]")).unwrap_err();
        assert!(e.to_string().contains("grid"), "{e}");
        assert!(parse_line("not json").is_err());
    }

    #[test]
    fn a_recording_returns_whole_new_lines_once() {
        let mut r = Recording::start().unwrap();
        let path = std::env::var_os(PROFILE_FILE_VAR).unwrap();
        assert_eq!(Path::new(&path), r.path());
        std::fs::write(r.path(), format!("{LINE}\n{}", &LINE[..20])).unwrap();
        assert_eq!(r.take().unwrap().len(), 1);
        std::fs::write(r.path(), format!("{LINE}\n{LINE}\n{LINE}\n")).unwrap();
        assert_eq!(r.take().unwrap().len(), 2);
        let kept = r.path().to_path_buf();
        drop(r);
        assert!(!kept.exists());
    }
}
