//! The folded cross attentions' token-side weights, derived at load from the official
//! projections (`mask_decoder::fold_job` names them; `graph::fold_ops` has the math).
//!
//! With `W_h` the rows `h*hd..(h+1)*hd` of a `[c, dim]` projection (nn.Linear layout) and
//! `Wo_h` the columns `h*hd..(h+1)*hd` of out_proj's `[dim, c]`:
//! - token->image `q.{h}`: `q'_h = (Wq_h x + bq_h) Wk_h`, weight `Wk_h^T Wq_h`, bias
//!   `Wk_h^T bq_h` (`q_h . bk_h` is constant along a softmax row and cancels);
//! - token->image `out`: `sum_h Wo_h (Wv_h y_h + bv_h) + bo` on the row of all heads'
//!   `y_h`, weight `[Wo_h Wv_h]_h` (`[dim, heads * dim]`), bias `Wo bv + bo`;
//! - image->token `k.{h}`: `k'_h = Wq_h^T (Wk_h x + bk_h)`, weight `Wq_h^T Wk_h`, bias
//!   `Wq_h^T bk_h`;
//! - image->token `v.{h}`: `v''_h = Wo_h (Wv_h x + bv_h)`, weight `Wo_h Wv_h`, bias
//!   `Wo_h bv_h` (out_proj's own bias is added once by the attention kernel);
//! - image->token `logit_bias`: `bq_h . k_h`, weight rows `Wk_h^T bq_h`, biases
//!   `bq_h . bk_h`.
//!
//! Products run in f64 and round once to f32, so the derived weights carry no more
//! rounding than the official ones.

use crate::error::{Error, Result};

/// One attention's official projections (nn.Linear layout), read on demand.
struct Projections {
    dim: usize,
    c: usize,
    heads: usize,
}

impl Projections {
    fn hd(&self) -> usize {
        self.c / self.heads
    }

    /// `sum_j a[(h*hd + j) * ra + i] * b[(h*hd + j) * rb + o]` for a `[dim, dim]` result
    /// `[o][i]`: the head-`h` product of two `[c, dim]` projections, `B_h^T A_h`.
    fn head_product(&self, h: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (dim, hd) = (self.dim, self.hd());
        let mut out = vec![0.0f64; dim * dim];
        for j in h * hd..(h + 1) * hd {
            let (ar, br) = (&a[j * dim..(j + 1) * dim], &b[j * dim..(j + 1) * dim]);
            for (o, &bo) in br.iter().enumerate() {
                let row = &mut out[o * dim..(o + 1) * dim];
                for (x, &ai) in row.iter_mut().zip(ar) {
                    *x += bo as f64 * ai as f64;
                }
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// `sum_j v[h*hd + j] * b[(h*hd + j) * dim + o]` over `o`: `B_h^T v_h`.
    fn head_vec(&self, h: usize, v: &[f32], b: &[f32]) -> Vec<f32> {
        let (dim, hd) = (self.dim, self.hd());
        let mut out = vec![0.0f64; dim];
        for j in h * hd..(h + 1) * hd {
            for (x, &bo) in out.iter_mut().zip(&b[j * dim..(j + 1) * dim]) {
                *x += v[j] as f64 * bo as f64;
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// `Wo_h Wv_h` as `[dim out][dim in]`: out_proj `[dim, c]`, v_proj `[c, dim]`.
    fn out_value(&self, h: usize, wo: &[f32], wv: &[f32]) -> Vec<f32> {
        let (dim, c, hd) = (self.dim, self.c, self.hd());
        let mut out = vec![0.0f64; dim * dim];
        for o in 0..dim {
            let row = &mut out[o * dim..(o + 1) * dim];
            for j in h * hd..(h + 1) * hd {
                let w = wo[o * c + j] as f64;
                for (x, &v) in row.iter_mut().zip(&wv[j * dim..(j + 1) * dim]) {
                    *x += w * v as f64;
                }
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// `Wo_h b_h` (`[dim]`), or with `h` None `Wo b`.
    fn out_vec(&self, h: Option<usize>, wo: &[f32], b: &[f32]) -> Vec<f32> {
        let (dim, c, hd) = (self.dim, self.c, self.hd());
        let js = match h {
            Some(h) => h * hd..(h + 1) * hd,
            None => 0..c,
        };
        (0..dim)
            .map(|o| {
                js.clone()
                    .map(|j| wo[o * c + j] as f64 * b[j] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
}

/// The derived tensor `name` (`{attn}.fold.{part}[.{head}].{weight|bias}`), or None when
/// `name` is not a folded one. `official` reads an official tensor as f32.
pub fn fold_tensor(
    name: &str,
    (dim, heads): (usize, usize),
    official: &dyn Fn(&str) -> Result<Vec<f32>>,
) -> Option<Result<Vec<f32>>> {
    let (attn, rest) = name.split_once(".fold.")?;
    let (job, what) = rest.rsplit_once('.')?;
    let (part, head) = match job.split_once('.') {
        Some((p, h)) => (p, Some(h.parse::<usize>().ok()?)),
        None => (job, None),
    };
    Some(derive(attn, (part, head, what), (dim, heads), official))
}

fn derive(
    attn: &str,
    (part, head, what): (&str, Option<usize>, &str),
    (dim, heads): (usize, usize),
    official: &dyn Fn(&str) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let get = |p: &str, w: &str| official(&format!("{attn}.{p}.{w}"));
    let wq = get("q_proj", "weight")?;
    let c = wq.len() / dim.max(1);
    let pr = Projections { dim, c, heads };
    if heads == 0 || c * dim != wq.len() || !c.is_multiple_of(heads) {
        return Err(Error::Unsupported(format!(
            "{attn}: q_proj of {} values is no [c, {dim}] projection over {heads} heads",
            wq.len()
        )));
    }
    let h = || {
        head.filter(|&h| h < heads).ok_or_else(|| {
            Error::Unsupported(format!("{attn}: folded head {head:?} of {heads} heads"))
        })
    };
    let bias = what == "bias";
    Ok(match (part, bias) {
        ("q", false) => pr.head_product(h()?, &wq, &get("k_proj", "weight")?),
        ("q", true) => pr.head_vec(h()?, &get("q_proj", "bias")?, &get("k_proj", "weight")?),
        ("k", false) => pr.head_product(h()?, &get("k_proj", "weight")?, &wq),
        ("k", true) => pr.head_vec(h()?, &get("k_proj", "bias")?, &wq),
        ("v", false) => pr.out_value(h()?, &get("out_proj", "weight")?, &get("v_proj", "weight")?),
        ("v", true) => pr.out_vec(
            Some(h()?),
            &get("out_proj", "weight")?,
            &get("v_proj", "bias")?,
        ),
        ("out", false) => {
            let (wo, wv) = (get("out_proj", "weight")?, get("v_proj", "weight")?);
            let per_head: Vec<Vec<f32>> = (0..heads).map(|h| pr.out_value(h, &wo, &wv)).collect();
            // Row o: every head's row o side by side.
            (0..dim)
                .flat_map(|o| {
                    per_head
                        .iter()
                        .flat_map(move |m| m[o * dim..(o + 1) * dim].iter().copied())
                })
                .collect()
        }
        ("out", true) => {
            let wo_bv = pr.out_vec(None, &get("out_proj", "weight")?, &get("v_proj", "bias")?);
            let bo = get("out_proj", "bias")?;
            wo_bv
                .iter()
                .zip(&bo)
                .map(|(a, b)| (*a as f64 + *b as f64) as f32)
                .collect()
        }
        ("logit_bias", false) => {
            let (bq, wk) = (get("q_proj", "bias")?, get("k_proj", "weight")?);
            (0..heads).flat_map(|h| pr.head_vec(h, &bq, &wk)).collect()
        }
        ("logit_bias", true) => {
            let (bq, bk) = (get("q_proj", "bias")?, get("k_proj", "bias")?);
            let hd = pr.hd();
            (0..heads)
                .map(|h| {
                    (h * hd..(h + 1) * hd)
                        .map(|j| bq[j] as f64 * bk[j] as f64)
                        .sum::<f64>() as f32
                })
                .collect()
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "{attn}: no folded tensor {part} {what}"
            )))
        }
    })
}

/// A folded token Linear's module name under attention `attn`: `{attn}.fold.{part}` or
/// `{attn}.fold.{part}.{head}`. Its weights (`.weight`, `.bias`) are derived at load
/// ([`fold_tensor`]).
pub(crate) fn fold_job(attn: &str, part: &str, head: Option<usize>) -> String {
    match head {
        Some(h) => format!("{attn}.fold.{part}.{h}"),
        None => format!("{attn}.fold.{part}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const DIM: usize = 12;
    const C: usize = 6;
    const HEADS: usize = 2;
    const A: &str = "attn";

    fn rand_vec(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect()
    }

    fn weights() -> HashMap<String, Vec<f32>> {
        let mut s = 7u64;
        let mut w = HashMap::new();
        for p in ["q_proj", "k_proj", "v_proj"] {
            w.insert(format!("{A}.{p}.weight"), rand_vec(&mut s, C * DIM));
            w.insert(format!("{A}.{p}.bias"), rand_vec(&mut s, C));
        }
        w.insert(format!("{A}.out_proj.weight"), rand_vec(&mut s, DIM * C));
        w.insert(format!("{A}.out_proj.bias"), rand_vec(&mut s, DIM));
        w
    }

    fn lin(w: &[f32], b: &[f32], x: &[f32], n: usize) -> Vec<f64> {
        let k = x.len();
        (0..n)
            .map(|o| {
                b[o] as f64
                    + (0..k)
                        .map(|i| w[o * k + i] as f64 * x[i] as f64)
                        .sum::<f64>()
            })
            .collect()
    }

    fn softmax(l: &[f64]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    /// The official Attention on one query row `x` over `ys` (keys `ys + pe`... folded in
    /// by the caller: `kin` feeds k_proj, `vin` v_proj).
    fn official_attn(
        w: &HashMap<String, Vec<f32>>,
        x: &[f32],
        kin: &[Vec<f32>],
        vin: &[Vec<f32>],
    ) -> Vec<f64> {
        let g = |n: &str| &w[&format!("{A}.{n}")];
        let q = lin(g("q_proj.weight"), g("q_proj.bias"), x, C);
        let ks: Vec<Vec<f64>> = kin
            .iter()
            .map(|y| lin(g("k_proj.weight"), g("k_proj.bias"), y, C))
            .collect();
        let vs: Vec<Vec<f64>> = vin
            .iter()
            .map(|y| lin(g("v_proj.weight"), g("v_proj.bias"), y, C))
            .collect();
        let hd = C / HEADS;
        let mut cat = vec![0.0f32; C];
        for h in 0..HEADS {
            let r = h * hd..(h + 1) * hd;
            let l: Vec<f64> = ks
                .iter()
                .map(|k| r.clone().map(|j| q[j] * k[j]).sum::<f64>() / (hd as f64).sqrt())
                .collect();
            let p = softmax(&l);
            for j in r {
                cat[j] = p.iter().zip(&vs).map(|(p, v)| p * v[j]).sum::<f64>() as f32;
            }
        }
        lin(g("out_proj.weight"), g("out_proj.bias"), &cat, DIM)
    }

    fn fold(w: &HashMap<String, Vec<f32>>, name: &str) -> Vec<f32> {
        let official = |n: &str| {
            w.get(n)
                .cloned()
                .ok_or_else(|| Error::MissingTensor(n.into()))
        };
        fold_tensor(&format!("{A}.fold.{name}"), (DIM, HEADS), &official)
            .expect("a folded name")
            .unwrap()
    }

    fn dot(a: &[f64], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(a, b)| a * *b as f64).sum()
    }

    #[test]
    fn folded_token_to_image_equals_the_official_attention() {
        let w = weights();
        let mut s = 11u64;
        let x = rand_vec(&mut s, DIM);
        let (ys, pes): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..5)
            .map(|_| (rand_vec(&mut s, DIM), rand_vec(&mut s, DIM)))
            .unzip();
        let ype: Vec<Vec<f32>> = ys
            .iter()
            .zip(&pes)
            .map(|(y, p)| y.iter().zip(p).map(|(a, b)| a + b).collect())
            .collect();
        let want = official_attn(&w, &x, &ype, &ys);
        let scale = 1.0 / ((C / HEADS) as f64).sqrt();
        let mut row = Vec::new();
        for h in 0..HEADS {
            let qf = lin(
                &fold(&w, &format!("q.{h}.weight")),
                &fold(&w, &format!("q.{h}.bias")),
                &x,
                DIM,
            );
            let p = softmax(&ype.iter().map(|y| scale * dot(&qf, y)).collect::<Vec<_>>());
            row.extend(
                (0..DIM)
                    .map(|i| p.iter().zip(&ys).map(|(p, y)| p * y[i] as f64).sum::<f64>() as f32),
            );
        }
        let got = lin(&fold(&w, "out.weight"), &fold(&w, "out.bias"), &row, DIM);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-5, "{g} vs {e}");
        }
    }

    #[test]
    fn folded_image_to_token_equals_the_official_attention() {
        let w = weights();
        let mut s = 13u64;
        // One image row (+ PE) attends to 3 tokens (+ PE for the keys).
        let xpe = rand_vec(&mut s, DIM);
        let (ts, tpe): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..3)
            .map(|_| (rand_vec(&mut s, DIM), rand_vec(&mut s, DIM)))
            .unzip();
        let tk: Vec<Vec<f32>> = ts
            .iter()
            .zip(&tpe)
            .map(|(t, p)| t.iter().zip(p).map(|(a, b)| a + b).collect())
            .collect();
        let want = official_attn(&w, &xpe, &tk, &ts);
        let scale = 1.0 / ((C / HEADS) as f64).sqrt();
        let (cbw, cbb) = (fold(&w, "logit_bias.weight"), fold(&w, "logit_bias.bias"));
        let mut got: Vec<f64> = w[&format!("{A}.out_proj.bias")]
            .iter()
            .map(|&b| b as f64)
            .collect();
        for h in 0..HEADS {
            let (kw, kb) = (
                fold(&w, &format!("k.{h}.weight")),
                fold(&w, &format!("k.{h}.bias")),
            );
            let (vw, vb) = (
                fold(&w, &format!("v.{h}.weight")),
                fold(&w, &format!("v.{h}.bias")),
            );
            let l: Vec<f64> = tk
                .iter()
                .map(|t| {
                    let kf: Vec<f32> = lin(&kw, &kb, t, DIM).iter().map(|&v| v as f32).collect();
                    let cb = lin(&cbw, &cbb, t, HEADS)[h];
                    scale * (dot(&xpe.iter().map(|&v| v as f64).collect::<Vec<_>>(), &kf) + cb)
                })
                .collect();
            let p = softmax(&l);
            for (p, t) in p.iter().zip(&ts) {
                let vf = lin(&vw, &vb, t, DIM);
                got.iter_mut().zip(&vf).for_each(|(g, v)| *g += p * v);
            }
        }
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-5, "{g} vs {e}");
        }
    }

    #[test]
    fn unknown_folded_names_are_errors_not_panics() {
        let w = weights();
        let official = |n: &str| {
            w.get(n)
                .cloned()
                .ok_or_else(|| Error::MissingTensor(n.into()))
        };
        assert!(fold_tensor("attn.q_proj.weight", (DIM, HEADS), &official).is_none());
        for bad in [
            "attn.fold.q.9.weight",
            "attn.fold.z.weight",
            "nope.fold.q.0.weight",
        ] {
            let r = fold_tensor(bad, (DIM, HEADS), &official);
            assert!(matches!(r, Some(Err(_))), "{bad}");
        }
    }
}
