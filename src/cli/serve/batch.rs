//! Dynamic batching: the prompts of concurrent `/v1/segment` requests on one embedding go
//! to the decoder together. One task collects requests until `--max-batch` prompts are
//! waiting or `--batch-wait-ms` has passed since the first, then decodes each embedding's
//! group in one [`samrt::Sam::predict_independent`] call, whose result per prompt does not
//! depend on the rest of the batch: every answer is the one the request gets alone.
//! Requests arriving while a batch decodes queue up and make the next batch.
//!
//! A batch waits only while some `/v1/segment` request is on its way (admitted, its body
//! being read or checked): a lone client pays no wait, concurrent ones meet in one batch.

use super::cache::Entry;
use super::http::ApiError;
use super::metrics::Metrics;
use samrt::{Prediction, Prompt, Sam};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Copy)]
pub struct Config {
    pub max_batch: usize,
    pub wait: Duration,
}

struct Job {
    id: String,
    entry: Arc<Entry>,
    prompts: Vec<Prompt>,
    reply: oneshot::Sender<Result<Vec<Prediction>, ApiError>>,
}

/// The handle requests use; the queue behind it is bounded by the server's admission limit.
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    coming: Arc<AtomicUsize>,
}

/// A segment request on its way to the batcher; counted until it is queued or dropped.
pub struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a waiting batch looks whether the requests on their way have arrived.
const POLL: Duration = Duration::from_micros(200);

impl Batcher {
    pub fn start(sam: Arc<Sam>, metrics: Arc<Metrics>, cfg: Config) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let coming = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(sam, metrics, cfg, rx, coming.clone()));
        Batcher { tx, coming }
    }

    /// Announces a segment request that will reach [`Batcher::decode`] soon.
    pub fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(self.coming.clone())
    }

    /// Decodes `prompts` (already checked against the model) on `entry`, in some batch.
    pub async fn decode(
        &self,
        coming: Coming,
        id: String,
        entry: Arc<Entry>,
        prompts: Vec<Prompt>,
    ) -> Result<Vec<Prediction>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            id,
            entry,
            prompts,
            reply,
        };
        self.tx
            .send(job)
            .map_err(|_| ApiError::internal("the decoder has stopped"))?;
        drop(coming);
        rx.await
            .map_err(|_| ApiError::internal("the decoder dropped the request"))?
    }
}

async fn run(
    sam: Arc<Sam>,
    metrics: Arc<Metrics>,
    cfg: Config,
    mut rx: mpsc::UnboundedReceiver<Job>,
    coming: Arc<AtomicUsize>,
) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let deadline = tokio::time::Instant::now() + cfg.wait;
        let mut n = first.prompts.len();
        let mut jobs = vec![first];
        while n < cfg.max_batch {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(_) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if coming.load(Ordering::SeqCst) == 0 || left.is_zero() {
                        break;
                    }
                    tokio::time::timeout(POLL.min(left), rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            match next {
                Some(j) if n + j.prompts.len() > cfg.max_batch => {
                    carry = Some(j);
                    break;
                }
                Some(j) => {
                    n += j.prompts.len();
                    jobs.push(j);
                }
                None => {}
            }
        }
        // One decoder call per embedding, in order of first arrival.
        while !jobs.is_empty() {
            let id = jobs[0].id.clone();
            let (group, rest): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.id == id);
            jobs = rest;
            decode_group(&sam, &metrics, group).await;
        }
    }
}

async fn decode_group(sam: &Arc<Sam>, metrics: &Metrics, group: Vec<Job>) {
    let entry = group[0].entry.clone();
    let mut prompts = Vec::new();
    let mut replies = Vec::new();
    for j in group {
        replies.push((j.prompts.len(), j.reply));
        prompts.extend(j.prompts);
    }
    metrics.batch(prompts.len());
    let sam = sam.clone();
    let res =
        tokio::task::spawn_blocking(move || sam.predict_independent(&entry.emb, &prompts)).await;
    let preds = match res {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let err = ApiError::from_lib(e);
            for (_, r) in replies {
                let _ = r.send(Err(err.clone()));
            }
            return;
        }
        Err(e) => {
            for (_, r) in replies {
                let _ = r.send(Err(ApiError::internal(format!("the decoder failed: {e}"))));
            }
            return;
        }
    };
    // Hand each request its own slice of the results, in its order.
    let mut rest = preds;
    for (k, r) in replies {
        let tail = rest.split_off(k);
        let _ = r.send(Ok(rest));
        rest = tail;
    }
}
