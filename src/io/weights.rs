//! Where model modules get their parameters from. Modules ask by official state-dict name
//! and expected shape, so a checkpoint that disagrees is rejected with a named error
//! instead of being read out of bounds.

use crate::error::{Error, Result};
use std::collections::HashMap;

use half::f16;

/// One named tensor converted to f16, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF16 {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f16>,
}

pub trait WeightSource: Sync {
    /// Shape of a tensor, or None if absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor as f32 after checking that its shape is `expected` and that every value is
    /// finite (see [`check_finite_tensor`]).
    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>>;
    /// All tensor names, sorted.
    fn names(&self) -> Vec<String>;
}

/// Checks a tensor's presence and shape, shared by every `WeightSource`.
pub fn check_shape(src: &dyn WeightSource, name: &str, expected: &[usize]) -> Result<()> {
    match src.shape(name) {
        None => Err(Error::MissingTensor(name.to_string())),
        Some(s) if s != expected => Err(Error::Shape {
            name: name.to_string(),
            expected: expected.to_vec(),
            got: s,
        }),
        Some(_) => Ok(()),
    }
}

/// How many of `v` are NaN or infinite. Branch-free so it vectorises: run right after a
/// tensor is converted, while it is still in cache, it costs little next to the conversion.
pub fn count_non_finite(v: &[f32]) -> usize {
    v.iter()
        .map(|x| usize::from(x.to_bits() & 0x7F80_0000 == 0x7F80_0000))
        .sum()
}

/// The error for tensor `name` holding `bad` (> 0) non-finite values out of `values`. A
/// trained model has none; one NaN weight turns every output NaN, so the load stops here,
/// naming the tensor, rather than printing `null` scores later.
pub fn non_finite_tensor(name: &str, bad: usize, values: &[f32]) -> Error {
    let (first, value) = values
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
        .map_or((0, f32::NAN), |(i, &x)| (i, x));
    Error::NonFinite(format!(
        "tensor `{name}` holds {bad} NaN or infinite value{} (of {}, the first at flat index \
         {first}: {}); the checkpoint is damaged",
        if bad == 1 { "" } else { "s" },
        values.len(),
        value
    ))
}

/// `values` unchanged if every one is finite, else [`non_finite_tensor`]'s error.
pub fn check_finite_tensor(name: &str, values: Vec<f32>) -> Result<Vec<f32>> {
    match count_non_finite(&values) {
        0 => Ok(values),
        bad => Err(non_finite_tensor(name, bad, &values)),
    }
}

/// In-memory weights: used by tests and by `samrt bench` with random weights.
#[derive(Default, Clone)]
pub struct MapWeights {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl MapWeights {
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        self.tensors.insert(name.into(), (shape, data));
    }
}

impl WeightSource for MapWeights {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|(s, _)| s.clone())
    }
    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        check_shape(self, name, expected)?;
        check_finite_tensor(name, self.tensors[name].1.clone())
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }
}

/// fp16 tensors held in memory (a `.pth` read without writing the conversion cache, as
/// `samrt info` does).
pub struct F16Weights {
    tensors: HashMap<String, TensorF16>,
}

impl F16Weights {
    pub fn new(tensors: Vec<TensorF16>) -> Self {
        F16Weights {
            tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
        }
    }
}

impl WeightSource for F16Weights {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }
    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        check_shape(self, name, expected)?;
        Ok(self.tensors[name].data.iter().map(|h| h.to_f32()).collect())
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }
}

/// splitmix64 + Box-Muller: a dependency-free, platform-independent generator for the
/// random-weight models used by tests and `samrt bench`.
pub struct Rng {
    state: u64,
    /// The second value of the last Box-Muller pair.
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed,
            spare: None,
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1) on a 2^-23 grid.
    pub fn uniform_pm1(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Uniform in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
    /// `n` draws of N(mean, std^2), rounded to f16-representable values so that f16 and
    /// f32 backends see the same weights.
    pub fn fill(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| half::f16::from_f32((mean + std * self.normal()) as f32).to_f32())
            .collect()
    }
}
