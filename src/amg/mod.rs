//! Building blocks of the official automatic mask generator (`segment_anything/utils/amg.py`),
//! each reproducing the official arithmetic so `generate` keeps and orders masks as it does.

pub mod geometry;
pub mod output;
pub mod regions;
pub mod rle;
