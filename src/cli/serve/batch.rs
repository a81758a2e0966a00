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
    max_batch: usize,
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
        Batcher {
            tx,
            coming,
            max_batch: cfg.max_batch,
        }
    }

    /// Announces a segment request that will reach [`Batcher::decode`] soon.
    pub fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(self.coming.clone())
    }

    /// Decodes `prompts` (already checked against the model) on `entry`, in some batch.
    /// A request with more than `--max-batch` prompts goes as several jobs of at most that
    /// many, so no decoder call exceeds the cap.
    pub async fn decode(
        &self,
        coming: Coming,
        id: String,
        entry: Arc<Entry>,
        mut prompts: Vec<Prompt>,
    ) -> Result<Vec<Prediction>, ApiError> {
        let mut waits = Vec::new();
        while !prompts.is_empty() {
            let rest = prompts.split_off(prompts.len().min(self.max_batch));
            let (reply, rx) = oneshot::channel();
            let job = Job {
                id: id.clone(),
                entry: entry.clone(),
                prompts,
                reply,
            };
            self.tx
                .send(job)
                .map_err(|_| ApiError::internal("the decoder has stopped"))?;
            waits.push(rx);
            prompts = rest;
        }
        drop(coming);
        let mut out = Vec::new();
        for rx in waits {
            let part = rx
                .await
                .map_err(|_| ApiError::internal("the decoder dropped the request"))??;
            out.extend(part);
        }
        Ok(out)
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
    if group.len() == 1 {
        let Job {
            entry,
            prompts,
            reply,
            ..
        } = group.into_iter().next().expect("one job");
        let _ = reply.send(decode_call(sam, metrics, &entry, prompts).await);
        return;
    }
    let entry = group[0].entry.clone();
    let prompts: Vec<Prompt> = group.iter().flat_map(|j| j.prompts.clone()).collect();
    match decode_call(sam, metrics, &entry, prompts).await {
        Ok(preds) => {
            // Hand each request its own slice of the results, in its order.
            let mut rest = preds;
            for j in group {
                let tail = rest.split_off(j.prompts.len());
                let _ = j.reply.send(Ok(rest));
                rest = tail;
            }
        }
        // Prompts are checked before they queue, so this is rare (a numerical failure, a
        // panic); one request's failure must not become its neighbours' answer, so each
        // request is decoded again alone and gets what it would have got alone.
        Err(_) => {
            for j in group {
                let res = decode_call(sam, metrics, &j.entry, j.prompts).await;
                let _ = j.reply.send(res);
            }
        }
    }
}

/// One decoder call on the blocking pool; a panic in it becomes a 500 for its requests.
async fn decode_call(
    sam: &Arc<Sam>,
    metrics: &Metrics,
    entry: &Arc<Entry>,
    prompts: Vec<Prompt>,
) -> Result<Vec<Prediction>, ApiError> {
    metrics.batch(prompts.len());
    let (sam, entry) = (sam.clone(), entry.clone());
    match tokio::task::spawn_blocking(move || sam.predict_independent(&entry.emb, &prompts)).await {
        Ok(res) => res.map_err(ApiError::from_lib),
        Err(e) => Err(ApiError::internal(format!("the decoder failed: {e}"))),
    }
}
