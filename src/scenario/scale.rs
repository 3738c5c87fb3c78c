//! `--time-scale`: a scenario's own times in proportion, so the bundled
//! `ramp`, `spike`, `soak` and `mix` become CI-sized in one flag.

use std::time::Duration;

use super::Scenario;

/// Smallest and largest factor.
pub const RANGE: (f64, f64) = (0.001, 100.0);

impl Scenario {
    /// Scale every stage duration and hold, the run length, the warm-up,
    /// the think times (between iterations and after each step) and the
    /// time-series window (never under 1 s) by `f`. Request timeouts, a
    /// step's cancel time and the server's own pace are not the scenario's
    /// shape and stay.
    pub fn scale_time(&mut self, f: f64) -> Result<(), String> {
        if !(RANGE.0..=RANGE.1).contains(&f) {
            return Err(format!(
                "`{f}` is not a factor between {} and {}",
                RANGE.0, RANGE.1
            ));
        }
        let load = &mut self.load;
        load.duration = load.duration.map(|d| d.mul_f64(f));
        load.warmup = load.warmup.mul_f64(f);
        load.think_time = load.think_time.scaled(f);
        load.window = load.window.mul_f64(f).max(Duration::from_secs(1));
        if let Some(mut shape) = load.shape.take() {
            for s in &mut shape.stages {
                s.duration = s.duration.mul_f64(f);
            }
            load.set_shape(shape);
        }
        for step in &mut self.steps {
            step.think_time = step.think_time.scaled(f);
        }
        self.time_scale = Some(f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::shape::Think;

    #[test]
    fn the_bundled_ramp_keeps_its_stages_in_proportion() {
        let mut s = Scenario::load("ramp", &[]).expect("ramp");
        let before: Vec<Duration> = s
            .load
            .shape
            .as_ref()
            .expect("stages")
            .stages
            .iter()
            .map(|x| x.duration)
            .collect();
        let total = s.load.duration.expect("length");
        s.scale_time(0.05).expect("scaled");
        let shape = s.load.shape.as_ref().expect("stages");
        for (a, b) in before.iter().zip(&shape.stages) {
            assert!((b.duration.as_secs_f64() - a.as_secs_f64() * 0.05).abs() < 1e-9);
        }
        assert!(
            (s.load.duration.expect("length").as_secs_f64() - total.as_secs_f64() * 0.05).abs()
                < 1e-6
        );
        assert_eq!(s.load.concurrency, 2000, "users are not times");
        assert_eq!(
            s.load.window,
            Duration::from_secs(1),
            "a window is never under 1 s"
        );
        assert_eq!(s.time_scale, Some(0.05));
    }

    #[test]
    fn think_times_scale_and_bad_factors_are_refused() {
        assert_eq!(
            Think::Uniform(Duration::from_secs(2), Duration::from_secs(4)).scaled(0.5),
            Think::Uniform(Duration::from_secs(1), Duration::from_secs(2))
        );
        assert_eq!(
            Think::LogNormal(Duration::from_secs(2), 0.5).scaled(2.0),
            Think::LogNormal(Duration::from_secs(4), 0.5)
        );
        let mut s = Scenario::load("mix", &[]).expect("mix");
        assert!(
            s.scale_time(0.0).is_err() && s.scale_time(-1.0).is_err() && s.scale_time(1e6).is_err()
        );
    }
}
