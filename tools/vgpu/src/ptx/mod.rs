//! PTX front end: text to [`ast::Module`]. Syntax only; meaning is given by lowering.

pub mod ast;
mod lexer;
pub mod parser;

pub use ast::*;
pub use parser::parse;
