//! The public API: [`predictor::Sam`] (load, embed, predict), the backend that runs the
//! image encoder ([`backend`]), and saved image embeddings ([`embedding_file`]).

pub mod backend;
pub mod batch;
pub mod embedding_file;
pub mod predictor;
pub mod prompt_json;
