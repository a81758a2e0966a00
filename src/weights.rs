//! Where model modules get their parameters from. Modules ask by official state-dict name
//! and expected shape, so a checkpoint that disagrees is rejected with a named error
//! instead of being read out of bounds.

use crate::error::{Error, Result};
use std::collections::HashMap;

pub trait WeightSource: Sync {
    /// Shape of a tensor, or None if absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor as f32 after checking that its shape is `expected`.
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
        Ok(self.tensors[name].1.clone())
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
