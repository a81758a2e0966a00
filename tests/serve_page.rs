//! The click-to-segment page of `samrt serve` in a real browser: headless Chromium driven
//! through chromedriver's WebDriver HTTP API (a minimal client on raw sockets). It opens the
//! page, uploads a fixture image, clicks a point, waits for the overlay, checks that the
//! overlay has pixels and the score is shown, and saves a screenshot as
//! target/serve-page.png. Without `chromedriver` and `chromium` on PATH it skips with a
//! message (tools/install-chromium.sh installs them); with SAMRT_REQUIRE_BROWSER=1, as CI
//! sets it, their absence fails instead.

mod common;
use common::server::{parse_response, Server};
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One WebDriver command; the answer's `value`.
fn wd(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // chromedriver keeps the connection open whatever the request says: read the head,
    // then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let want = loop {
        let n = s.read(&mut buf).expect("chromedriver answers");
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("Content-Length");
            break end + 4 + len;
        }
    };
    while raw.len() < want {
        let n = s.read(&mut buf).expect("chromedriver answers");
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
    }
    let r = parse_response(&raw);
    let v: Value = serde_json::from_slice(&r.body).expect("WebDriver JSON");
    assert_eq!(r.status, 200, "{method} {path}: {v}");
    v["value"].clone()
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `script` (a WebDriver sync script) until `done` accepts its value (bounded).
fn wait_for(port: u16, sid: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let v = wd(
            port,
            "POST",
            &format!("/session/{sid}/execute/sync"),
            Some(json!({"script": script, "args": []})),
        );
        if done(&v) {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "timed out waiting: last {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn page_segments_a_clicked_point_in_headless_chromium() {
    let (Some(driver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium")) else {
        assert!(
            std::env::var("SAMRT_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SAMRT_REQUIRE_BROWSER=1 but chromium/chromedriver are not on PATH (tools/install-chromium.sh)"
        );
        eprintln!("skipping the browser test: chromium and chromedriver are not on PATH (run tools/install-chromium.sh)");
        return;
    };
    let server = Server::start(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,700"]
    }}}});
    let sid = wd(port, "POST", "/session", Some(caps))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("http://{}/", server.addr);
    wd(
        port,
        "POST",
        &format!("/session/{sid}/url"),
        Some(json!({"url": url})),
    );
    let find = |css: &str| -> String {
        let v = wd(
            port,
            "POST",
            &format!("/session/{sid}/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("finding {css}: {v}"))
            .to_string()
    };
    let file = find("#file");
    let image = fixtures().join(image("coffee")["file"].as_str().unwrap());
    wd(
        port,
        "POST",
        &format!("/session/{sid}/element/{file}/value"),
        Some(json!({"text": image.to_str().unwrap()})),
    );
    let state = "return document.body.dataset.state";
    let s = wait_for(port, &sid, state, |v| v != "empty" && v != "embedding");
    assert_eq!(s, "ready", "after the upload");
    let marks = find("#marks");
    wd(
        port,
        "POST",
        &format!("/session/{sid}/element/{marks}/click"),
        Some(json!({})),
    );
    let s = wait_for(port, &sid, state, |v| v == "done" || v == "error");
    assert_eq!(s, "done");
    let count = "const c = document.getElementById('overlay'); \
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;";
    let pixels = wait_for(port, &sid, count, |_| true).as_u64().unwrap();
    let score = wait_for(
        port,
        &sid,
        "return document.getElementById('score').textContent",
        |_| true,
    );
    let score: f64 = score
        .as_str()
        .unwrap()
        .parse()
        .expect("a numeric score is shown");
    let png = wd(port, "GET", &format!("/session/{sid}/screenshot"), None);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/serve-page.png");
    std::fs::write(&out, png).unwrap();
    wd(port, "DELETE", &format!("/session/{sid}"), None);
    eprintln!(
        "overlay: {pixels} pixels, score {score}; screenshot {}",
        out.display()
    );
    assert!(pixels > 0, "the overlay is empty");
    assert!(score.is_finite());
}
