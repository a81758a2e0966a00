//! The C ABI from C: the programs of examples/c/ compiled with the system C compiler (`cc`,
//! or `$CC`) against include/samrt.h and libsamrt.so, then run.
//!
//! Integration tests do not build a cdylib-only package's library, so the first test to need
//! it runs `cargo build` for this package with the test's own profile and features, into the
//! test's own target directory: the library under test is always the current code.

extern crate samrt_core as samrt;
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{f64s, fixtures, prompts, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory holding the freshly built libsamrt.so (target/<profile>/).
fn lib_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/c_abi-<hash>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_string(),
            p => p.to_string(),
        };
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "samrt-capi", "--profile", &profile])
            .arg("--target-dir")
            .arg(target)
            .current_dir(root());
        if cfg!(feature = "cuda") {
            cmd.args(["--features", "cuda"]);
        }
        let o = cmd.output().expect("run cargo build");
        assert!(o.status.success(), "cargo build: {}", text(&o.stderr));
        assert!(profile_dir.join("libsamrt.so").is_file());
        profile_dir
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// examples/c/<name>.c built against the header and the library, with every warning an
/// error: the header must compile cleanly as strict C11.
fn compile(name: &str) -> PathBuf {
    compile_as(name, false)
}

/// [`compile`], with AddressSanitizer and its leak checker when `asan`. Once per process and
/// kind: tests run in parallel, and one must not run a program that another is writing.
fn compile_as(name: &str, asan: bool) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = if asan {
        format!("{name}-asan")
    } else {
        name.to_string()
    };
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, exe)) = built.iter().find(|(n, _)| *n == key) {
        return exe.clone();
    }
    let lib = lib_dir();
    let exe = scratch("c-abi").join(&key);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let flags: &[&str] = match asan {
        true => &["-g", "-O1", "-fsanitize=address", "-fno-omit-frame-pointer"],
        false => &["-O2"],
    };
    let o = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-pthread",
        ])
        .args(flags)
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join(format!("examples/c/{name}.c")))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lsamrt", "-lm"])
        .output()
        .unwrap_or_else(|e| panic!("run the C compiler {cc:?}: {e}"));
    assert!(o.status.success(), "{cc} {name}.c: {}", text(&o.stderr));
    built.push((key, exe.clone()));
    exe
}

/// Runs a compiled example with the .pth cache in a scratch directory.
fn run(exe: &Path, args: &[&Path]) -> Output {
    Command::new(exe)
        .args(args)
        .env("SAMRT_CACHE_DIR", scratch("c-abi-cache"))
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .output()
        .expect("run the example")
}

fn tiny_pth() -> PathBuf {
    fixtures().join("sam_tiny.pth")
}

fn chelsea() -> PathBuf {
    fixtures().join("images/chelsea.png")
}

/// The fixture prompt the example runs: one foreground point on chelsea.png, three masks.
const CHELSEA_POINT: &str = "chelsea_point";

/// One printed mask: score, area, FNV-1a-64 of its bytes.
#[derive(Debug, PartialEq)]
struct Line {
    score: f32,
    area: usize,
    hash: u64,
}

/// The `what i: score s area a fnv1a64 h` lines of segment's output.
fn lines(out: &str, what: &str) -> Vec<Line> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{what} ")))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((w[2], w[4], w[6]), ("score", "area", "fnv1a64"), "{l}");
            Line {
                score: w[3].parse().unwrap(),
                area: w[5].parse().unwrap(),
                hash: u64::from_str_radix(w[7], 16).unwrap(),
            }
        })
        .collect()
}

fn fnv1a64(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// What the Rust API gives for the same masks: the C ABI adds nothing and loses nothing.
fn rust_lines(p: &samrt::Prediction) -> Vec<Line> {
    (0..p.num_masks)
        .map(|i| Line {
            score: p.scores[i],
            area: p.mask(i).iter().filter(|&&b| b).count(),
            hash: fnv1a64(p.mask(i).iter().map(|&b| b as u8)),
        })
        .collect()
}

/// A binary PGM as written by segment.c: (width, height, pixels).
fn read_pgm(path: &Path) -> (usize, usize, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let head: Vec<&[u8]> = data.splitn(4, |&b| b == b'\n').collect();
    assert_eq!(head[0], b"P5");
    let dims: Vec<usize> = std::str::from_utf8(head[1])
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(head[2], b"255");
    assert_eq!(head[3].len(), dims[0] * dims[1]);
    (dims[0], dims[1], head[3].to_vec())
}

/// segment.c at point (x, y), writing the best mask to `pgm`.
fn segment(exe: &Path, model: &Path, image: &Path, device: &str, xy: &str, pgm: &Path) -> Output {
    let (x, y) = xy.split_once(' ').unwrap();
    let args = [model, image, device.as_ref(), x.as_ref(), y.as_ref(), pgm];
    run(exe, &args)
}

/// threads.c at point (x, y) with `rounds` predictions per thread on the shared embedding
/// (and one on the thread's own).
fn threads(model: &Path, image: &Path, device: &str, xy: &str, rounds: usize) {
    threads_as(compile("threads"), model, image, device, xy, rounds)
}

fn threads_as(exe: PathBuf, model: &Path, image: &Path, device: &str, xy: &str, rounds: usize) {
    let (x, y) = xy.split_once(' ').unwrap();
    let rounds_arg = rounds.to_string();
    let args = [
        model,
        image,
        device.as_ref(),
        x.as_ref(),
        y.as_ref(),
        rounds_arg.as_ref(),
    ];
    let o = run(&exe, &args);
    let out = text(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let want = format!("8 threads x {} predictions: 0 differ or failed", rounds + 1);
    assert!(out.contains(&want), "{out}");
}

#[test]
fn example_segments_the_fixture_image() {
    let exe = compile("segment");
    let pgm = scratch("c-abi").join("best.pgm");
    let o = segment(&exe, &tiny_pth(), &chelsea(), "cpu", "200 150", &pgm);
    let out = text(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "{}", text(&o.stderr));

    // The version is the samrt crate's.
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(cargo.contains(&format!("\nversion = \"{version}\"\n")));
    assert!(out.starts_with(&format!("samrt {version}\n")), "{out}");
    assert!(
        out.contains("image 451x300, 3 masks, low-res side 256"),
        "{out}"
    );

    // Equal to the Rust API, bit for bit (scores print with 9 digits: f32 round-trips).
    let sam = common::tiny_model();
    let img = samrt::io::image::decode::load_image(&chelsea()).unwrap();
    let emb = sam.embed(&img).unwrap();
    let mut prompt = samrt::Prompt {
        points: vec![[200.0, 150.0]],
        labels: vec![1],
        multimask: true,
        ..Default::default()
    };
    let want = sam.predict(&emb, &prompt).unwrap();
    assert_eq!(lines(&out, "mask"), rust_lines(&want));
    let best = (0..3)
        .max_by(|&a, &b| want.scores[a].total_cmp(&want.scores[b]))
        .unwrap();
    let side = sam.low_res_side();
    prompt.mask_input = Some(want.low_res_logits[best * side * side..][..side * side].to_vec());
    prompt.multimask = false;
    let refined = sam.predict(&emb, &prompt).unwrap();
    assert_eq!(lines(&out, "refined"), rust_lines(&refined));
    let (w, h, px) = read_pgm(&pgm);
    assert_eq!((w, h), (451, 300));
    assert!(px
        .iter()
        .zip(want.mask(best))
        .all(|(&p, &m)| p == 255 * m as u8));

    // And to the official predictor, within the parity tests' tolerances (tests/parity.rs:
    // scores 2e-3; masks agree on 99.5 % of pixels, so areas differ by at most 0.5 %).
    let fixture = prompts()
        .iter()
        .find(|p| p["name"] == CHELSEA_POINT)
        .unwrap();
    assert_eq!(f64s(&fixture["points"][0]), [200.0, 150.0]);
    let official = f64s(&fixture["scores"]);
    let areas = f64s(&fixture["areas"]);
    for (i, l) in lines(&out, "mask").iter().enumerate() {
        assert!(
            (l.score as f64 - official[i]).abs() <= 2e-3,
            "mask {i}: {l:?}"
        );
        assert!(
            (l.area as f64 - areas[i]).abs() <= 0.005 * (w * h) as f64,
            "mask {i}"
        );
    }
}

#[test]
fn eight_threads_predicting_on_one_model_get_identical_masks() {
    threads(&tiny_pth(), &chelsea(), "cpu", "200 150", 3);
}

#[test]
fn bad_input_returns_minus_one_with_a_message() {
    errors(compile("errors"));
}

/// errors.c and threads.c under AddressSanitizer: no bad access and, at exit, no leak (the
/// leak checker fails the run), through every error path, double free and concurrent call.
/// Live handles and predictions stay reachable in samrt's registries, so what the checker
/// sees is memory samrt lost itself (on an error path, say), not a free the caller forgot.
#[test]
fn error_paths_and_threads_are_clean_under_address_sanitizer() {
    errors(compile_as("errors", true));
    threads_as(
        compile_as("threads", true),
        &tiny_pth(),
        &chelsea(),
        "cpu",
        "200 150",
        1,
    );
}

fn errors(exe: PathBuf) {
    // A model at input size 256: low-res side 64 and 16x16 embeddings, against sam_tiny's 256
    // and 64x64.
    let other = common::img_size_model(256);
    let o = run(&exe, &[&tiny_pth(), &other, &chelsea()]);
    let out = text(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("0 failures"), "{out}");
    // Every case ran: none was skipped by an early exit.
    let ok = out.lines().filter(|l| l.starts_with("ok: ")).count();
    assert_eq!(ok, 29, "{out}");
}

/// The `cuda` device: without the feature a clear refusal; with it, on a GPU (or vgpu) the
/// same masks as the CPU within the CUDA CLI tests' tolerances (fp16 encoder: scores 2e-2,
/// 99.5 % of pixels), and without one a refusal naming what is missing while "auto" falls
/// back to the CPU.
#[test]
fn cuda_device_runs_or_says_why_not() {
    let exe = compile("segment");
    // The small 256-px model keeps the encoder fast on vgpu.
    let model = common::img_size_model(256);
    let image = common::img_size_dir().join("image.png");
    let cpu_pgm = scratch("c-abi").join("cpu.pgm");
    // Image 120x90: a point near its centre.
    let xy = "60 45";
    let cpu = segment(&exe, &model, &image, "cpu", xy, &cpu_pgm);
    assert!(cpu.status.success(), "{}", text(&cpu.stderr));
    let cuda_pgm = scratch("c-abi").join("cuda.pgm");
    let cuda = segment(&exe, &model, &image, "cuda", xy, &cuda_pgm);
    let err = text(&cuda.stderr);
    let usable = cfg!(feature = "cuda") && samrt::sam::backend::probe_cuda().is_ok();
    if !usable {
        assert!(
            !std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1"),
            "SAMRT_REQUIRE_GPU=1 but no usable GPU: {err}"
        );
        assert!(!cuda.status.success());
        if cfg!(feature = "cuda") {
            assert!(
                err.contains("segment: samrt_model_load: device \"cuda\""),
                "{err}"
            );
        } else {
            assert!(err.contains("built without the `cuda` feature"), "{err}");
        }
        let auto = segment(&exe, &model, &image, "auto", xy, &cuda_pgm);
        assert!(auto.status.success(), "{}", text(&auto.stderr));
        assert_eq!(text(&auto.stdout), text(&cpu.stdout));
        println!("cuda refused as expected: {err}");
        return;
    }
    assert!(cuda.status.success(), "{err}");
    let (c, g) = (text(&cpu.stdout), text(&cuda.stdout));
    println!("cpu:\n{c}cuda:\n{g}");
    for what in ["mask", "refined"] {
        let (a, b) = (lines(&c, what), lines(&g, what));
        assert_eq!(a.len(), b.len(), "{what}");
        for (a, b) in a.iter().zip(&b) {
            assert!((a.score - b.score).abs() <= 2e-2, "{what}: {a:?} vs {b:?}");
        }
    }
    let (cpu_px, cuda_px) = (read_pgm(&cpu_pgm).2, read_pgm(&cuda_pgm).2);
    let agree = cpu_px.iter().zip(&cuda_px).filter(|(a, b)| a == b).count();
    let frac = agree as f64 / cpu_px.len() as f64;
    println!("best mask: {:.4} % of pixels agree", 100.0 * frac);
    assert!(frac >= 0.995, "{frac}");
    // Threads sharing a model on the device (one round each: a vgpu prediction takes
    // seconds).
    threads(&model, &image, "cuda", xy, 1);
}
