//! The token side's Linears as the decoder schedule groups them (`mask_decoder::Builder`):
//! one `token_linear` launch runs several Linears of one shape (`graph::decoder_ops::
//! TokenLinear`'s jobs), because at one prompt each Linear is a few microseconds of work
//! and the launches decide the latency.

use crate::graph::buffer::BufId;

/// The shape a group of token Linears shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinearGroup {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) ldo: usize,
    pub(crate) relu: bool,
    pub(crate) accumulate: bool,
}

/// One Linear of a group: its official module name, its first input row, whether its input
/// adds the query PE, and where its rows go.
pub(crate) struct Job {
    pub(crate) name: String,
    pub(crate) a_offset: usize,
    pub(crate) pe: bool,
    pub(crate) out: BufId,
    pub(crate) out_offset: usize,
}

impl Job {
    pub(crate) fn new(name: &str, pe: bool, out: BufId) -> Job {
        Job {
            name: name.to_string(),
            a_offset: 0,
            pe,
            out,
            out_offset: 0,
        }
    }
}

/// An MLP head: its module name, the token row it reads, its layer widths, and where its
/// last layer writes (buffer, offset, row stride).
pub(crate) struct Head {
    pub(crate) name: String,
    pub(crate) token: usize,
    pub(crate) dims: Vec<usize>,
    pub(crate) out: (BufId, usize, usize),
}

/// A group's node label: the jobs' names after their common module path, joined by `+`
/// (`...self_attn.q_proj+k_proj+v_proj`).
pub(crate) fn group_label(names: &[&str]) -> String {
    let first = names[0];
    let mut common = first.len();
    for n in &names[1..] {
        common = common.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let cut = first[..common].rfind('.').map_or(0, |i| i + 1);
    let tails: Vec<&str> = names.iter().map(|n| &n[cut..]).collect();
    format!("{}{}", &first[..cut], tails.join("+"))
}
