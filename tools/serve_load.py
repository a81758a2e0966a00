#!/usr/bin/env python3
"""Load test of `samrt serve` (issue 21's figures), bounded in requests and time.

Starts `target/release/samrt serve` on 127.0.0.1 port 0 with MODEL, embeds IMAGE, then:
  * encode once: the second POST /v1/embed of the image (ms, best and median of 5);
  * ROUNDS rounds, each of
      - sequential: one client sends REQUESTS single-point /v1/segment requests one after
        another (throughput, p50, p99);
      - concurrent: CLIENTS clients send REQUESTS such requests in all (throughput, p50,
        p99);
    with the speedup (concurrent / sequential throughput) per round and its median. The
    phases alternate so that a machine whose speed drifts (a shared VM) slows both alike;
    the server's CPU time per phase says how busy its cores were;
  * overhead: the sequential p50 against the library's `predict` (+ the COCO RLE of its
    masks) for the same prompt, from examples/predict_timing.rs.
Same image and prompt throughout. Prints one JSON object.

Usage: tools/serve_load.py MODEL.safetensors [--image PNG] [--requests N] [--clients C]
       [--rounds R] [--samrt BIN --predict-timing BIN (another build)]
For vit_b random weights: cargo run --release --example random_checkpoint -- vit_b /tmp/vit_b.safetensors
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120


def request(addr, method, path, body=b""):
    host, port = addr
    c = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    c.request(method, path, body=body, headers={"Connection": "close"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return data


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def summary(lat, wall):
    return {
        "requests": len(lat),
        "throughput_rps": round(len(lat) / wall, 2),
        "p50_ms": round(pct(lat, 50) * 1e3, 2),
        "p99_ms": round(pct(lat, 99) * 1e3, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--image", default=os.path.join(ROOT, "tests/fixtures/images/coffee.png"))
    ap.add_argument("--point", default="300,200")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samrt", default=os.path.join(ROOT, "target/release/samrt"))
    ap.add_argument("--serve-args", default="", help="extra flags for samrt serve")
    ap.add_argument("--predict-timing", default=None,
                    help="a built examples/predict_timing to take the library figures from "
                         "(default: cargo run it from this tree); pair it with --samrt when "
                         "measuring another build")
    a = ap.parse_args()
    if not 1 <= a.requests <= 100_000 or not 1 <= a.clients <= 256 or not 1 <= a.rounds <= 20:
        sys.exit("--requests must be in 1..100000, --clients in 1..256, --rounds in 1..20")
    x, y = (float(v) for v in a.point.split(","))
    srv = subprocess.Popen(
        [a.samrt, "serve", "--model", a.model, "--device", "cpu", "--listen", "127.0.0.1:0"]
        + a.serve_args.split(),
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        addr = None
        while addr is None and time.time() < deadline:
            line = srv.stderr.readline()
            if not line:
                sys.exit("samrt serve exited before its ready line")
            m = re.match(r"samrt: listening on http://([\d.]+):(\d+)", line)
            if m:
                addr = (m.group(1), int(m.group(2)))
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        img = open(a.image, "rb").read()
        t = time.perf_counter()
        first = json.loads(request(addr, "POST", "/v1/embed", img))
        first_s = time.perf_counter() - t
        again = []
        for _ in range(5):
            t = time.perf_counter()
            r = json.loads(request(addr, "POST", "/v1/embed", img))
            again.append(time.perf_counter() - t)
            assert r["cached"], r
        body = json.dumps({"image_id": first["image_id"],
                           "prompts": [{"points": [[x, y]]}]}).encode()
        want = request(addr, "POST", "/v1/segment", body)  # warm-up and the reference answer

        def one(lat):
            t = time.perf_counter()
            got = request(addr, "POST", "/v1/segment", body)
            lat.append(time.perf_counter() - t)
            if got != want:
                raise RuntimeError("an answer differs from the lone answer")

        def server_cpu_s():
            # utime + stime of the server process, from /proc (Linux).
            f = open(f"/proc/{srv.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        def sequential(lat):
            for _ in range(a.requests):
                one(lat)

        def concurrent(lat):
            errors = []
            counter = iter(range(a.requests))
            lock = threading.Lock()

            def client():
                while True:
                    with lock:
                        if next(counter, None) is None:
                            return
                    try:
                        one(lat)
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append(e)
                        return

            threads = [threading.Thread(target=client) for _ in range(a.clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(TIMEOUT_S * a.requests)
            if errors:
                sys.exit(f"errors: {errors[:3]}")

        def decoder_calls():
            m = request(addr, "GET", "/metrics").decode()
            return float(re.search(r"^samrt_decoder_batch_size_count (\S+)", m, re.M).group(1))

        def phase(run):
            lat = []
            n0 = decoder_calls()
            c, t = server_cpu_s(), time.perf_counter()
            run(lat)
            wall = time.perf_counter() - t
            out = summary(lat, wall)
            out["server_cores_busy"] = round((server_cpu_s() - c) / wall, 2)
            out["decoder_calls"] = decoder_calls() - n0
            return lat, wall, out

        rounds, seq, conc, seq_wall, conc_wall = [], [], [], 0.0, 0.0
        for _ in range(a.rounds):
            sl, sw, so = phase(sequential)
            cl, cw, co = phase(concurrent)
            seq += sl
            conc += cl
            seq_wall += sw
            conc_wall += cw
            rounds.append({"sequential": so, "concurrent": co,
                           "speedup": round(co["throughput_rps"] / so["throughput_rps"], 2)})
        timing = ([a.predict_timing] if a.predict_timing else
                  ["cargo", "run", "--quiet", "--release", "--example", "predict_timing", "--"])
        lib = json.loads(subprocess.run(
            timing + [a.model, a.image, str(x), str(y), "20"],
            cwd=ROOT, check=True, capture_output=True, text=True, timeout=1800).stdout)
        s, c = summary(seq, seq_wall), summary(conc, conc_wall)
        out = {
            "image": os.path.basename(a.image),
            "embed_first_ms": round(first_s * 1e3, 1),
            "embed_again_ms": {"best": round(min(again) * 1e3, 2),
                               "median": round(statistics.median(again) * 1e3, 2)},
            "sequential": s,
            "concurrent": dict(c, clients=a.clients),
            "speedup": round(c["throughput_rps"] / s["throughput_rps"], 2),
            "speedup_median_of_rounds": round(statistics.median(r["speedup"] for r in rounds), 3),
            "rounds": rounds,
            "library": lib,
            "overhead_vs_predict_rle": round(s["p50_ms"] / lib["predict_rle"]["p50_ms"] - 1, 3),
            "overhead_vs_predict": round(s["p50_ms"] / lib["predict"]["p50_ms"] - 1, 3),
        }
        print(json.dumps(out, indent=1))
    finally:
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
