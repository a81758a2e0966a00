//! What the server holds between requests: the model, the embedding cache (LRU by bytes),
//! encodes in flight (so concurrent posts of one image encode it once), and the admission
//! count that bounds how many requests wait.

use super::batch::Batcher;
use super::cache::{Entry, Lru};
use super::http::ApiError;
use super::metrics::Metrics;
use axum::http::StatusCode;
use samrt::Sam;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{OnceCell, Semaphore};

type Pending = Arc<OnceCell<Result<Arc<Entry>, ApiError>>>;

pub struct Limits {
    pub cache_bytes: usize,
    pub max_body: usize,
    pub max_queue: usize,
}

pub struct App {
    pub sam: Arc<Sam>,
    pub model_name: String,
    pub device: String,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub batcher: Batcher,
    /// Encodes and automatic mask generation run one at a time: each already uses every
    /// core, and two at once would only double the memory.
    pub heavy: Arc<Semaphore>,
    /// Test hooks (`SAMRT_SERVE_TEST_HOOKS=1`): a route that panics, to prove a panicking
    /// handler answers 500 and the server goes on.
    pub test_hooks: bool,
    cache: Mutex<Lru>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A place in the queue, held from admission to the answer.
pub struct Ticket(Arc<Metrics>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.queue_depth.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl App {
    pub fn new(
        sam: Sam,
        model_name: String,
        device: String,
        limits: Limits,
        batcher_cfg: super::batch::Config,
        test_hooks: bool,
    ) -> App {
        let sam = Arc::new(sam);
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(sam.clone(), metrics.clone(), batcher_cfg);
        App {
            sam,
            model_name,
            device,
            limits,
            metrics,
            batcher,
            heavy: Arc::new(Semaphore::new(1)),
            test_hooks,
            cache: Mutex::new(Lru::default()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request that will read a body and compute, or refuses it (503 with
    /// Retry-After) when `--max-queue` requests are already admitted.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        let m = &self.metrics;
        let prev = m.queue_depth.fetch_add(1, Ordering::SeqCst);
        let ticket = Ticket(m.clone());
        if prev as usize >= self.limits.max_queue {
            m.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError {
                retry_after: Some(1),
                close: true,
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "busy: {} requests are waiting (--max-queue); retry later",
                        self.limits.max_queue
                    ),
                )
            });
        }
        Ok(ticket)
    }

    /// A cached embedding by id, or 404.
    pub fn lookup(&self, id: &str) -> Result<Arc<Entry>, ApiError> {
        self.cached(id).ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown image_id `{id}`: never embedded here, or evicted from the cache \
                 (--cache-mb); POST the image to /v1/embed again"
            ))
        })
    }

    /// A cached embedding, counting the hit or miss.
    pub fn cached(&self, id: &str) -> Option<Arc<Entry>> {
        let hit = lock(&self.cache).get(id);
        let counter = if hit.is_some() {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// The embedding of an image file's bytes and whether it was there already (cached, or
    /// being encoded for another request, whose result this one shares).
    pub async fn embedding(&self, data: Vec<u8>) -> Result<(String, Arc<Entry>, bool), ApiError> {
        let id = sha256_hex(&data);
        let cell: Pending = {
            // The cache is looked at under the pending lock: an encode of these bytes puts
            // its entry in the cache before it leaves `pending`, so one of the two has it
            // and the image is never encoded twice.
            let mut pending = lock(&self.pending);
            if let Some(e) = self.cached(&id) {
                return Ok((id, e, true));
            }
            pending.entry(id.clone()).or_default().clone()
        };
        let ran = std::sync::atomic::AtomicBool::new(false);
        let res = cell
            .get_or_init(|| async {
                ran.store(true, Ordering::Relaxed);
                let res = self.encode(data).await;
                if let Ok(e) = &res {
                    let mut c = lock(&self.cache);
                    let ev = c.insert(id.clone(), e.clone(), self.limits.cache_bytes);
                    let m = &self.metrics;
                    m.cache_evictions.fetch_add(ev, Ordering::Relaxed);
                    m.cache_bytes.store(c.bytes as u64, Ordering::Relaxed);
                    m.cache_entries.store(c.map.len() as u64, Ordering::Relaxed);
                }
                lock(&self.pending).remove(&id);
                res
            })
            .await
            .clone()?;
        Ok((id, res, !ran.load(Ordering::Relaxed)))
    }

    async fn encode(&self, data: Vec<u8>) -> Result<Arc<Entry>, ApiError> {
        let _permit = self
            .heavy
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))?;
        let sam = self.sam.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let img = samrt::io::image::decode_image(&data, "the posted image")
                .map_err(ApiError::from_lib)?;
            drop(data);
            metrics.encodes.fetch_add(1, Ordering::Relaxed);
            let emb = sam.embed(&img).map_err(ApiError::from_lib)?;
            let bytes = emb.features.len() * 4;
            release_freed_memory();
            Ok(Arc::new(Entry { emb, bytes }))
        })
        .await
        .map_err(|e| ApiError::internal(format!("the image encoder failed: {e}")))?
    }
}

/// Returns the pages of the encoder's (or the generator's) freed activations to the system. glibc keeps freed
/// memory in per-thread arenas, and encodes land on whichever blocking thread tokio hands
/// out, so without this the resident set steps up by an encode's working set each time a
/// new thread encodes (measured: 68 -> 148 MiB over 200 tiny-model images) and is bounded
/// only by the number of arenas, not by `--cache-mb`.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads allocator state; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}
