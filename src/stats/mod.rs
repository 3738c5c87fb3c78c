//! Statistics: latency distributions where failures count as +∞.

pub mod fit;
pub mod format;
pub mod hist;
pub mod prom;

pub use hist::{Dist, LatencyHist};
