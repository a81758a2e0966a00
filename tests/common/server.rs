//! `samrt serve` as the tests drive it: the binary on 127.0.0.1 port 0 (the ready line on
//! stderr names the port), and a minimal HTTP/1.1 client on raw sockets, so that a test can
//! also send a body a byte at a time or stop halfway. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    /// Starts `samrt serve` on the tiny fixture model with `extra` flags, on the CPU.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_on(super::tiny_safetensors(), "cpu", extra)
    }

    /// `samrt serve` on `model` and `device` (`cpu`, `cuda`, `auto`) with `extra` flags.
    pub fn start_on(model: &std::path::Path, device: &str, extra: &[&str]) -> Server {
        // option_env: capi/tests include this module, and their package has no samrt binary.
        let Some(exe) = option_env!("CARGO_BIN_EXE_samrt") else {
            panic!("Server::start_on: only the samrt crate's tests have the samrt binary");
        };
        let mut child = Command::new(exe)
            .args(["serve", "--model", model.to_str().unwrap()])
            .args(["--device", device, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SAMRT_CACHE_DIR", super::scratch("serve-cache"))
            .env("SAMRT_SERVE_TEST_HOOKS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn samrt serve");
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("samrt: listening on http://") {
                    let _ = tx.send(a.parse::<SocketAddr>().expect("ready line address"));
                }
                log2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line; stderr: {}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            stderr: log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        s
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        let mut s = self.connect();
        s.write_all(&head(method, path, body.len())).unwrap();
        s.write_all(body).unwrap();
        read_response(&mut s)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, b"")
    }

    pub fn post_json(&self, path: &str, v: &serde_json::Value) -> Resp {
        self.request("POST", path, v.to_string().as_bytes())
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident set in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A request head with `Connection: close`, so the answer ends at EOF.
pub fn head(method: &str, path: &str, len: usize) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one response to EOF (bounded by the socket's read timeout).
pub fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

/// One prompt's entry of a `/v1/segment` answer, as the server writes it for `pred`: every
/// mask's score, area, bbox and COCO RLE, in the library's order.
pub fn masks_json(pred: &samrt::Prediction) -> serde_json::Value {
    let masks: Vec<serde_json::Value> = (0..pred.num_masks)
        .map(|i| {
            let s = pred.stats(i).unwrap();
            let rle =
                samrt::amg::rle::Rle::from_mask(pred.mask(i), pred.height, pred.width).unwrap();
            serde_json::json!({"score": pred.scores[i], "area": s.area, "bbox": s.bbox,
                   "rle": {"size": [pred.height, pred.width], "counts": rle.coco_string()}})
        })
        .collect();
    serde_json::json!({ "masks": masks })
}

/// Posts `data` to `/v1/auto` with thresholds 0 (every mask kept), `points_per_side` and
/// `points_per_batch`, and checks the answer is the records `gen` computes for `img` with the
/// same options, as `samrt auto` writes them (COCO RLE).
pub fn check_auto(
    s: &Server,
    data: &[u8],
    (gen, img): (&samrt::amg::AutoGenerator, &samrt::io::image::RgbImage),
    (points_per_side, points_per_batch): (usize, usize),
) {
    let q = format!(
        "points_per_side={points_per_side}&pred_iou_thresh=0&stability_score_thresh=0\
         &points_per_batch={points_per_batch}"
    );
    let r = s.request("POST", &format!("/v1/auto?{q}"), data);
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg = samrt::amg::generator::AmgConfig {
        points_per_side,
        pred_iou_thresh: 0.0,
        stability_score_thresh: 0.0,
        points_per_batch,
        ..Default::default()
    };
    let recs = gen.generate(img, &cfg, &mut |_| {}).unwrap();
    assert!(!recs.is_empty());
    let want: Vec<serde_json::Value> = recs
        .iter()
        .map(|r| samrt::amg::output::record_json(r, true))
        .collect();
    assert_eq!(r.json(), serde_json::Value::Array(want));
}
