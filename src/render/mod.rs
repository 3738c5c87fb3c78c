//! Rendering results for people.

pub mod report;
pub mod text;
