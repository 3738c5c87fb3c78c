//! Statistics: latency distributions where failures count as +∞.

pub mod hist;

pub use hist::{Dist, LatencyHist};
