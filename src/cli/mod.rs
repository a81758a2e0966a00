//! Subcommands. Each returns `CliError`, a library error with the context the user needs.

mod auto;
mod bench;
mod common;
mod convert;
mod embed;
mod info;
mod profile;
mod prompts;
mod segment;
mod serve;

use clap::{Parser, Subcommand};
use common::{CliError, Device};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "samrt", version, about = "Segment Anything inference runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Segment one image with point / box / mask prompts.
    Segment(segment::SegmentArgs),
    /// Serve SAM over HTTP: embedding cache, batched decoding, metrics and a
    /// click-to-segment page at `/` (README: "Serve").
    Serve(serve::ServeArgs),
    /// Run the image encoder once and save the embedding for `segment --embedding`.
    Embed(embed::EmbedArgs),
    /// Convert an official PyTorch .pth checkpoint to fp16 safetensors.
    Convert {
        /// Input .pth (torch.save zip format).
        input: PathBuf,
        /// Output .safetensors.
        output: PathBuf,
    },
    /// Automatic mask generation ("segment everything") over an image or a dataset.
    Auto(auto::AutoArgs),
    /// Per-component latency on random weights (vit_b/vit_l/vit_h) or a checkpoint.
    Bench(bench::BenchArgs),
    /// Every kernel of an image encode on the device: time (CUDA events, or on vgpu an
    /// H100 model of its counters), FLOPs, bytes, roofline floor and bound.
    Profile(profile::ProfileArgs),
    /// Print the configuration inferred from a checkpoint (.pth or .safetensors).
    Info {
        file: PathBuf,
        /// With `cuda`: also print the encoder's planned device memory (weights + arena),
        /// computed from the schedule without running anything.
        #[arg(long, value_enum, default_value = "cpu")]
        device: Device,
        /// Batch size for the device memory plan and the graph.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Print the CUDA encoder's and mask decoder's schedules: one line per node (op, kernel entry point,
        /// label, buffers read and written), one per buffer (bytes, first and last use,
        /// arena offset) and the totals. Planning is host-only: no GPU or `cuda` feature
        /// is needed.
        #[arg(long)]
        graph: bool,
        /// Input size for --graph (default: the model's own): the schedule of the model run
        /// at that size, as --image-size of embed, segment and auto runs it.
        #[arg(long, requires = "graph")]
        image_size: Option<usize>,
    },
}

/// Parses the arguments. Help and version go to stdout with exit 0; a usage error is
/// printed with the same `samrt:` prefix as every other message, and exits 2 as clap does.
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("samrt: error: {text}");
            std::process::exit(2);
        }
    }
}

pub fn run() -> Result<(), CliError> {
    let cli = parse_args();
    match cli.cmd {
        Cmd::Segment(a) => segment::run(a),
        Cmd::Embed(a) => embed::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Profile(a) => profile::run(a),
        Cmd::Auto(a) => auto::run(a),
        Cmd::Convert { input, output } => convert::convert(&input, &output),
        Cmd::Info {
            file,
            device,
            batch,
            graph,
            image_size,
        } => info::info(&file, device, batch, graph.then_some(image_size)),
    }
}
