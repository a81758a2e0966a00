//! Helpers shared by the checkpoint test files.

use samrt::io::weights::WeightSource;
use samrt::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "samrt-ckpt-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn err_of<T>(r: Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// Names and shapes only: lets vit_h-sized configs be tested without 2.5 GB of data.
pub struct Shapes(pub HashMap<String, Vec<usize>>);

impl WeightSource for Shapes {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.get(name).cloned()
    }
    fn f32(&self, name: &str, _: &[usize]) -> Result<Vec<f32>> {
        Err(Error::Unsupported(format!(
            "shape-only source has no data for {name}"
        )))
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.keys().cloned().collect();
        v.sort();
        v
    }
}

/// `[[name, [dims...]], ...]` of a shape listing (sam_shapes.json and the img_size fixtures).
pub fn tensor_listing(tensors: &serde_json::Value) -> Vec<(String, Vec<usize>)> {
    tensors
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (t[0].as_str().unwrap().to_string(), shape)
        })
        .collect()
}
