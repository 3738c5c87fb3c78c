//! What a run records besides its requests: examples of failures, the
//! pooled gaps between chunks, and where the requests themselves are.

use super::sample::{ErrorClass, ErrorExample, EXAMPLES_PER_CLASS};
use super::spill::Samples;
use crate::stats::LatencyHist;

/// What one virtual user records; merged once at the end.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Requests and workflow iterations, in their record files.
    pub records: Samples,
    /// A few failed requests per step and class, with what the server said.
    pub examples: Vec<ErrorExample>,
    /// Pooled gaps between content events, per step (measured requests only).
    pub itl: Vec<LatencyHist>,
}

impl Recorder {
    /// An empty recorder. Virtual users keep no histograms of their own (an
    /// HdrHistogram of this range is ~190 KB, too much per user at thousands
    /// of users); their gaps go to the run's shared per-step histograms in
    /// batches.
    pub fn new(_steps: usize) -> Self {
        Self::default()
    }

    /// Keep an example unless its step and class have enough already.
    pub fn add_example(&mut self, e: ErrorExample) {
        if self.wants_example(e.step, e.class) {
            self.examples.push(e);
        }
    }

    /// Whether a step and class still have room for an example (asked
    /// before one is built, so a flood of failures costs no allocations).
    pub fn wants_example(&self, step: u16, class: ErrorClass) -> bool {
        self.examples
            .iter()
            .filter(|x| x.step == step && x.class == class)
            .count()
            < EXAMPLES_PER_CLASS
    }

    /// Add another recorder's data.
    pub fn absorb(&mut self, other: Recorder) {
        self.records.extend(other.records);
        for e in other.examples {
            self.add_example(e);
        }
        if self.itl.len() < other.itl.len() {
            self.itl.resize_with(other.itl.len(), LatencyHist::new);
        }
        for (a, b) in self.itl.iter_mut().zip(&other.itl) {
            a.merge(b);
        }
    }
}
