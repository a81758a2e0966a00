//! Prometheus text metrics, all named `samrt_*`. Hand-rolled: a few counters and
//! fixed-bucket histograms behind one mutex are all the server needs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets in seconds: a cached embed is sub-millisecond, a vit_h encode on a CPU
/// is tens of seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn new(buckets: usize) -> Self {
        Histogram {
            counts: vec![0; buckets],
            sum: 0.0,
            n: 0,
        }
    }
    fn observe(&mut self, bounds: &[f64], v: f64) {
        for (c, &b) in self.counts.iter_mut().zip(bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }
    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

#[derive(Default)]
struct Tables {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    batches: Option<Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub cache_entries: AtomicU64,
    pub encodes: AtomicU64,
    pub queue_depth: AtomicU64,
    pub rejected_busy: AtomicU64,
}

fn lock(m: &Mutex<Tables>) -> std::sync::MutexGuard<'_, Tables> {
    // A panic elsewhere while holding the lock leaves only counts half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        let mut t = lock(&self.tables);
        *t.requests.entry((route, status)).or_default() += 1;
        t.latency
            .entry(route)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS.len()))
            .observe(&LATENCY_BUCKETS, took.as_secs_f64());
    }

    pub fn batch(&self, prompts: usize) {
        lock(&self.tables)
            .batches
            .get_or_insert_with(|| Histogram::new(BATCH_BUCKETS.len()))
            .observe(&BATCH_BUCKETS, prompts as f64);
    }

    pub fn render(&self) -> String {
        let t = lock(&self.tables);
        let mut o = String::new();
        o.push_str("# HELP samrt_requests_total HTTP requests answered, by route and status.\n");
        o.push_str("# TYPE samrt_requests_total counter\n");
        for ((route, status), n) in &t.requests {
            let _ = writeln!(
                o,
                "samrt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        o.push_str("# HELP samrt_request_duration_seconds Time from request to answer.\n");
        o.push_str("# TYPE samrt_request_duration_seconds histogram\n");
        for (route, h) in &t.latency {
            h.render(
                &mut o,
                "samrt_request_duration_seconds",
                &format!("route=\"{route}\""),
                &LATENCY_BUCKETS,
            );
        }
        o.push_str("# HELP samrt_decoder_batch_size Prompts per decoder call.\n");
        o.push_str("# TYPE samrt_decoder_batch_size histogram\n");
        t.batches
            .clone()
            .unwrap_or_else(|| Histogram::new(BATCH_BUCKETS.len()))
            .render(&mut o, "samrt_decoder_batch_size", "", &BATCH_BUCKETS);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars = [
            (
                "cache_hits_total",
                "counter",
                "Embedding cache hits.",
                get(&self.cache_hits),
            ),
            (
                "cache_misses_total",
                "counter",
                "Embedding cache lookups that found nothing: an image to encode (or being encoded for another request), or an unknown or evicted image_id (404).",
                get(&self.cache_misses),
            ),
            (
                "cache_evictions_total",
                "counter",
                "Embeddings evicted to stay within --cache-mb.",
                get(&self.cache_evictions),
            ),
            (
                "cache_bytes",
                "gauge",
                "Bytes of embeddings in the cache.",
                get(&self.cache_bytes),
            ),
            (
                "cache_entries",
                "gauge",
                "Embeddings in the cache.",
                get(&self.cache_entries),
            ),
            (
                "encodes_total",
                "counter",
                "Image encoder runs.",
                get(&self.encodes),
            ),
            (
                "queue_depth",
                "gauge",
                "Requests admitted and not yet answered (bounded by --max-queue).",
                get(&self.queue_depth),
            ),
            (
                "rejected_busy_total",
                "counter",
                "Requests refused with 503 because the queue was full.",
                get(&self.rejected_busy),
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(
                o,
                "# HELP samrt_{name} {help}\n# TYPE samrt_{name} {kind}\nsamrt_{name} {v}"
            );
        }
        o
    }
}
