//! A straight line through points, fitted as they arrive (least squares
//! from running sums): the prefill cost, TTFT = a + b·length.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Running sums of (x, y).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineSums {
    n: u64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
    syy: f64,
    min_x: f64,
    max_x: f64,
}

/// A fitted line, y = intercept + slope·x, with the slope's 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Points fitted.
    pub n: u64,
    /// y at x = 0.
    pub intercept: f64,
    /// dy/dx.
    pub slope: f64,
    /// The slope's 95% interval (Student's t on n − 2 degrees of freedom).
    pub slope_low: f64,
    /// Its upper end.
    pub slope_high: f64,
    /// Share of y's variance the line explains.
    pub r2: f64,
    /// Smallest x seen.
    pub min_x: f64,
    /// Largest x seen.
    pub max_x: f64,
}

impl LineSums {
    /// Add a point (non-finite ones are skipped).
    pub fn add(&mut self, x: f64, y: f64) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        if self.n == 0 {
            self.min_x = x;
            self.max_x = x;
        }
        self.n += 1;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
        self.syy += y * y;
        self.min_x = self.min_x.min(x);
        self.max_x = self.max_x.max(x);
    }

    /// The line, when there are at least 3 points and x varies.
    pub fn line(&self) -> Option<Line> {
        if self.n < 3 {
            return None;
        }
        let n = self.n as f64;
        let (mx, my) = (self.sx / n, self.sy / n);
        let sxx = self.sxx - n * mx * mx;
        let syy = self.syy - n * my * my;
        let sxy = self.sxy - n * mx * my;
        if sxx <= f64::EPSILON * self.sxx.abs().max(1.0) {
            return None;
        }
        let slope = sxy / sxx;
        let intercept = my - slope * mx;
        let sse = (syy - slope * sxy).max(0.0);
        let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };
        let se = (sse / (n - 2.0) / sxx).sqrt();
        let t = StudentsT::new(0.0, 1.0, n - 2.0).map_or(f64::NAN, |d| d.inverse_cdf(0.975));
        Some(Line {
            n: self.n,
            intercept,
            slope,
            slope_low: slope - t * se,
            slope_high: slope + t * se,
            r2,
            min_x: self.min_x,
            max_x: self.max_x,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noisy_line_is_recovered_with_an_interval_that_holds_it() {
        let mut s = LineSums::default();
        for i in 0..200 {
            let x = 1000.0 + 75.0 * f64::from(i);
            // ±2 ms of deterministic wobble.
            let wobble = f64::from((i * 37) % 9) / 2.0 - 2.0;
            s.add(x, 20.0 + 0.05 * x + wobble);
        }
        let l = s.line().expect("a line");
        assert!((l.slope - 0.05).abs() < 0.001, "{l:?}");
        assert!(l.slope_low < 0.05 && 0.05 < l.slope_high, "{l:?}");
        assert!((l.intercept - 20.0).abs() < 2.0, "{l:?}");
        assert!(l.r2 > 0.99, "{l:?}");
        assert_eq!((l.min_x, l.max_x), (1000.0, 1000.0 + 75.0 * 199.0));
        // One x only: no line.
        let mut flat = LineSums::default();
        for _ in 0..10 {
            flat.add(5.0, 1.0);
        }
        assert!(flat.line().is_none());
    }
}
