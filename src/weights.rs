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
