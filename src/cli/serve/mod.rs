//! `samrt serve`: SAM over HTTP. The image is encoded once per distinct file (cached by
//! the sha256 of its bytes, LRU by bytes), prompts are decoded against the cached
//! embedding, and the prompts of concurrent requests on one embedding are decoded together.
//! Routes: `GET /`, `/health`, `/metrics`, `/v1/embed/{id}`; `POST /v1/embed`,
//! `/v1/segment`, `/v1/auto` (README: "Serve").

mod auto;
mod batch;
mod cache;
mod http;
mod metrics;
mod routes;
mod segment;
mod state;

use super::common::{resolve_device, CliError, Device};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Checkpoint: .safetensors, or an official .pth (converted once and cached).
    #[arg(long)]
    model: PathBuf,
    /// Where the image encoder runs: auto (CUDA when a usable GPU exists, else the CPU),
    /// cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Address to listen on; port 0 picks a free port (the ready line on stderr names it).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: String,
    /// Embedding cache size in MiB, least recently used evicted first (a 1024-px embedding
    /// is 4 MiB).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    cache_mb: usize,
    /// Largest request body in MiB (an image, or a JSON request); larger gets 413.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_body_mb: usize,
    /// Most prompts decoded together in one batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_batch: usize,
    /// Longest time a batch waits for more prompts after its first, in milliseconds (it
    /// waits only while other segment requests are arriving).
    #[arg(long, default_value_t = 10, value_name = "N")]
    batch_wait_ms: u64,
    /// Most requests admitted at once (reading their body, waiting or computing); more get
    /// 503 with Retry-After. With --max-body-mb this bounds the memory requests take.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_queue: usize,
    /// Threads for the model's computations (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

pub fn run(a: ServeArgs) -> Result<(), CliError> {
    if a.max_batch == 0 || a.max_queue == 0 {
        return Err(CliError::msg(
            "--max-batch and --max-queue must be at least 1",
        ));
    }
    if a.threads == Some(0) {
        return Err(CliError::msg("--threads must be at least 1"));
    }
    let addr = listen_addr(&a.listen)?;
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::msg(format!("--threads {n}: {e}")))?;
    }
    let device = resolve_device(a.device)?;
    let sam = super::common::load_model(&a.model, device, None)?;
    let device_name = match device {
        samrt::ComputeDevice::Cpu => "cpu".to_string(),
        _ => format!("cuda ({})", sam.device_description()),
    };
    let mb = |n: usize| n.saturating_mul(1 << 20);
    let limits = state::Limits {
        cache_bytes: mb(a.cache_mb),
        max_body: mb(a.max_body_mb),
        max_queue: a.max_queue,
    };
    let batch = batch::Config {
        max_batch: a.max_batch,
        wait: Duration::from_millis(a.batch_wait_ms),
    };
    let hooks = std::env::var("SAMRT_SERVE_TEST_HOOKS").is_ok_and(|v| v == "1");
    // The runtime's threads only move bytes; the model computes on rayon's pool through
    // blocking tasks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::msg(format!("starting the server runtime: {e}")))?;
    let model_name = a.model.display().to_string();
    rt.block_on(async move {
        let app = Arc::new(state::App::new(
            sam,
            model_name,
            device_name,
            limits,
            batch,
            hooks,
        ));
        let listener = tokio::net::TcpListener::bind(&addr[..])
            .await
            .map_err(|e| CliError::msg(format!("--listen {}: {e}", a.listen)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::msg(format!("--listen {}: {e}", a.listen)))?;
        // Listening for the signals before the ready line: a supervisor that stops the
        // server right after it must get the graceful path, not the default action.
        let stop = shutdown_signal()?;
        let router = axum::Router::new()
            .fallback(routes::dispatch)
            .with_state(app);
        eprintln!("samrt: listening on http://{bound}");
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| CliError::msg(format!("serving on {bound}: {e}")))?;
        eprintln!("samrt: stopped (requests in flight were answered)");
        Ok(())
    })
}

/// `--listen`: an address, or a host name and port (`localhost:0`); every address the
/// name resolves to is tried in turn (a name listing `::1` first still binds on a host
/// without IPv6).
fn listen_addr(listen: &str) -> Result<Vec<std::net::SocketAddr>, CliError> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| {
        CliError::msg(format!(
            "--listen `{listen}`: {why}; expected HOST:PORT such as 127.0.0.1:8080"
        ))
    };
    if let Ok(a) = listen.parse() {
        return Ok(vec![a]);
    }
    let addrs: Vec<_> = listen
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("the host name has no address".into()));
    }
    Ok(addrs)
}

/// SIGINT or SIGTERM: stop accepting, answer what is in flight, exit 0. The handlers are
/// installed when this is called; the future waits for either signal.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |k: SignalKind| {
            signal(k).map_err(|e| CliError::msg(format!("listening for signals: {e}")))
        };
        let (mut int, mut term) = (
            listen(SignalKind::interrupt())?,
            listen(SignalKind::terminate())?,
        );
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("samrt: shutting down: answering the requests in flight");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("samrt: shutting down: answering the requests in flight");
        })
    }
}
