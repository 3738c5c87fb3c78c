//! Load shapes as a scenario states them: stages (the k6 convention), the
//! load model (closed: users; open: workflow starts per second), arrival
//! processes, think-time distributions and the weighted workflow mix.
//! These are values only; the engine's load plan turns them into start times.

use std::time::Duration;

use rand::Rng;

use super::caps;

/// Closed loop (users) or open loop (arrivals per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `target` is the number of concurrent virtual users.
    Closed,
    /// `target` is workflow starts per second.
    Open,
}

impl Model {
    /// The word in the scenario and the result.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Closed => "closed",
            Model::Open => "open",
        }
    }
}

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (coefficient of variation 1).
    Poisson,
    /// Gamma gaps with this shape: CV = 1/√shape (below 1 is burstier than Poisson).
    Gamma(f64),
}

impl Arrival {
    /// Parse `constant`, `poisson` or `gamma:<shape>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "constant" => Ok(Arrival::Constant),
            "poisson" => Ok(Arrival::Poisson),
            other => match other.strip_prefix("gamma:") {
                Some(k) => match k.trim().parse::<f64>() {
                    // Below 0.01 the gaps' spread (1/√k) is over 10× their
                    // mean: almost every arrival due in one burst.
                    Ok(k) if k.is_finite() && (0.01..=1000.0).contains(&k) => {
                        Ok(Arrival::Gamma(k))
                    }
                    _ => Err(format!(
                        "the gamma shape `{k}` must be a number from 0.01 to 1000 (1 is Poisson; below 1, burstier)"
                    )),
                },
                None => Err(format!(
                    "`{other}` is not an arrival process; write \"constant\", \"poisson\" or \"gamma:<shape>\""
                )),
            },
        }
    }

    /// The display form, as parsed.
    pub fn label(&self) -> String {
        match self {
            Arrival::Constant => "constant".into(),
            Arrival::Poisson => "poisson".into(),
            Arrival::Gamma(k) => format!("gamma:{k}"),
        }
    }

    /// One gap in units of the mean (mean 1).
    pub fn draw_unit(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Arrival::Constant => 1.0,
            Arrival::Poisson => exponential(rng),
            Arrival::Gamma(k) => gamma(*k, rng) / k,
        }
    }
}

/// One stage: the target moves linearly from the previous stage's target
/// (0 before the first) to `target` over `duration`; `0s` is a jump.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Optional name shown in reports; `stage N` otherwise.
    pub name: Option<String>,
    /// How long the stage lasts.
    pub duration: Duration,
    /// Users (closed) or workflow starts per second (open) at its end.
    pub target: f64,
}

impl Stage {
    /// Its name, or `stage N` (1-based).
    pub fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage {}", index + 1))
    }
}

/// What a user does when a stage lowers the target under it, or the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Finish the request in flight, then stop.
    Request,
    /// Finish the whole workflow iteration, then stop.
    Workflow,
}

/// A shaped load: stages under one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Closed or open loop.
    pub model: Model,
    /// The stages, in order; never empty.
    pub stages: Vec<Stage>,
    /// Open loop: how arrivals are spaced.
    pub arrival: Arrival,
    /// Open loop: most workflows in flight; an arrival beyond it is counted
    /// as missed, never queued.
    pub max_in_flight: u32,
}

impl Shape {
    /// Total length of the stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The highest target of any stage.
    pub fn peak(&self) -> f64 {
        self.stages.iter().map(|s| s.target).fold(0.0, f64::max)
    }

    /// The target at `t` from the start (right-continuous: at a jump, the
    /// new value). Beyond the end, the last target.
    pub fn target_at(&self, t: Duration) -> f64 {
        let mut from = 0.0;
        let mut start = Duration::ZERO;
        for s in &self.stages {
            let end = start + s.duration;
            if t < end {
                let f = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                return from + (s.target - from) * f;
            }
            from = s.target;
            start = end;
        }
        from
    }

    /// Start and end of each stage, from the run start.
    pub fn bounds(&self) -> Vec<(Duration, Duration)> {
        let mut start = Duration::ZERO;
        self.stages
            .iter()
            .map(|s| {
                let b = (start, start + s.duration);
                start = b.1;
                b
            })
            .collect()
    }

    /// Check the stages against each other and the caps: `Err((key, why))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.stages.is_empty() {
            return Err((
                "load.stages".into(),
                "there must be at least one stage".into(),
            ));
        }
        let cap = match self.model {
            Model::Closed => f64::from(caps::MAX_USERS),
            Model::Open => caps::MAX_RATE,
        };
        for (i, s) in self.stages.iter().enumerate() {
            let key = format!("load.stages[{i}]");
            if !s.target.is_finite() || s.target < 0.0 {
                return Err((
                    format!("{key}.target"),
                    format!("{} must be a number, 0 or more", s.target),
                ));
            }
            if s.target > cap {
                return Err((
                    format!("{key}.target"),
                    format!("{} is above the limit of {cap}", s.target),
                ));
            }
            if self.model == Model::Closed && s.target.fract() != 0.0 {
                return Err((
                    format!("{key}.target"),
                    format!("{} users: a closed-loop target is a whole number", s.target),
                ));
            }
        }
        if self.peak() <= 0.0 {
            return Err((
                "load.stages".into(),
                match self.model {
                    Model::Closed => "every stage targets 0 users: nothing would run".into(),
                    Model::Open => "every stage targets a rate of 0: nothing would arrive".into(),
                },
            ));
        }
        let total = self.duration();
        if total.is_zero() || total > caps::MAX_DURATION {
            return Err((
                "load.stages".into(),
                "the stages must last more than 0 and at most 24h together".into(),
            ));
        }
        if self.model == Model::Open
            && (self.max_in_flight == 0 || self.max_in_flight > caps::MAX_USERS)
        {
            return Err((
                "load.max_in_flight".into(),
                format!("must be between 1 and {}", caps::MAX_USERS),
            ));
        }
        Ok(())
    }
}

/// Parse `--stages`: `30s:10,2m:200,5m:200,0s:2000`, each `DURATION:TARGET`
/// with an optional `NAME=` before it.
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for (i, part) in s.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            return Err(format!("stage {} is empty", i + 1));
        }
        let (name, rest) = match part.split_once('=') {
            Some((n, r)) => (Some(n.trim().to_string()), r),
            None => (None, part),
        };
        let (d, t) = rest
            .split_once(':')
            .ok_or_else(|| format!("`{part}` is not DURATION:TARGET (for example `2m:200`)"))?;
        let duration = super::parse_duration(d)?;
        let target = t
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{t}` in `{part}` is not a number"))?;
        if name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.chars().any(char::is_control))
        {
            return Err(format!(
                "the name in `{part}` is empty or holds control characters"
            ));
        }
        stages.push(Stage {
            name,
            duration,
            target,
        });
    }
    Ok(stages)
}

/// A pause drawn from a distribution, seeded by the caller's generator.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Think {
    /// No pause.
    #[default]
    None,
    /// Always this long.
    Constant(Duration),
    /// Uniform between the two.
    Uniform(Duration, Duration),
    /// Log-normal with this median and σ of the log.
    LogNormal(Duration, f64),
}

impl Think {
    /// The same pause `f` times as long (a log-normal keeps its σ).
    pub fn scaled(&self, f: f64) -> Self {
        match *self {
            Think::None => Think::None,
            Think::Constant(d) => Think::Constant(d.mul_f64(f)),
            Think::Uniform(a, b) => Think::Uniform(a.mul_f64(f), b.mul_f64(f)),
            Think::LogNormal(m, s) => Think::LogNormal(m.mul_f64(f), s),
        }
    }

    /// Parse `2s`, `uniform(1s, 3s)` or `lognormal(2s, 0.5)`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let args = |name: &str| {
            s.strip_prefix(name)
                .and_then(|r| r.trim().strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(','))
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        };
        let think = if let Some((a, b)) = args("uniform") {
            let (a, b) = (super::parse_duration(&a)?, super::parse_duration(&b)?);
            if a > b {
                return Err(format!("`{s}`: the lower bound is above the upper"));
            }
            Think::Uniform(a, b)
        } else if let Some((m, sigma)) = args("lognormal") {
            let m = super::parse_duration(&m)?;
            let sigma: f64 = sigma
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && (0.0..=3.0).contains(x))
                .ok_or_else(|| format!("`{s}`: σ must be a number between 0 and 3"))?;
            Think::LogNormal(m, sigma)
        } else if s.contains('(') {
            return Err(format!(
                "`{s}` is not a think time; write \"2s\", \"uniform(1s, 3s)\" or \"lognormal(2s, 0.5)\""
            ));
        } else {
            match super::parse_duration(s)? {
                d if d.is_zero() => Think::None,
                d => Think::Constant(d),
            }
        };
        if think.ceiling() > caps::MAX_THINK {
            return Err(format!("`{s}`: a think time must be at most 1h"));
        }
        Ok(think)
    }

    /// One pause (at most [`caps::MAX_THINK`]).
    pub fn draw(&self, rng: &mut impl Rng) -> Duration {
        let d = match *self {
            Think::None => Duration::ZERO,
            Think::Constant(d) => d,
            Think::Uniform(a, b) => a + (b - a).mul_f64(rng.random::<f64>()),
            Think::LogNormal(m, sigma) => m.mul_f64((sigma * normal(rng)).exp().min(1e6)),
        };
        d.min(caps::MAX_THINK)
    }

    /// The typical pause (the median; for a constant, itself).
    pub fn median(&self) -> Duration {
        match *self {
            Think::None => Duration::ZERO,
            Think::Constant(d) | Think::LogNormal(d, _) => d,
            Think::Uniform(a, b) => (a + b) / 2,
        }
    }

    /// True when it never pauses.
    pub fn is_none(&self) -> bool {
        matches!(self, Think::None)
    }

    /// The largest value a parameter names (for the cap check).
    fn ceiling(&self) -> Duration {
        match *self {
            Think::None => Duration::ZERO,
            Think::Constant(d) | Think::LogNormal(d, _) | Think::Uniform(_, d) => d,
        }
    }

    /// The display form.
    pub fn label(&self) -> String {
        let f = |d: Duration| humantime::format_duration(d).to_string();
        match *self {
            Think::None => "0s".into(),
            Think::Constant(d) => f(d),
            Think::Uniform(a, b) => format!("uniform({}, {})", f(a), f(b)),
            Think::LogNormal(m, s) => format!("lognormal({}, {s})", f(m)),
        }
    }
}

/// A named workflow of a mix: which steps, in which order, how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Its name in results.
    pub name: String,
    /// Relative weight of the draw.
    pub weight: f64,
    /// Indices into the scenario's steps, in order.
    pub steps: Vec<usize>,
}

/// Draw a workflow index by weight.
pub fn draw_workflow(workflows: &[Workflow], rng: &mut impl Rng) -> usize {
    if workflows.len() <= 1 {
        return 0;
    }
    let total: f64 = workflows.iter().map(|w| w.weight).sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in workflows.iter().enumerate() {
        if x < w.weight {
            return i;
        }
        x -= w.weight;
    }
    workflows.len() - 1
}

/// A standard exponential draw.
fn exponential(rng: &mut impl Rng) -> f64 {
    // 1 − u is in (0, 1]: the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

/// A standard normal draw (Box–Muller).
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(k, 1) draw (Marsaglia–Tsang; shapes below 1 by the boost
/// `G(k) = G(k+1) · U^{1/k}`).
fn gamma(k: f64, rng: &mut impl Rng) -> f64 {
    if k < 1.0 {
        let u = 1.0 - rng.random::<f64>();
        return gamma(k + 1.0, rng) * u.powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn stage(secs: u64, target: f64) -> Stage {
        Stage {
            name: None,
            duration: Duration::from_secs(secs),
            target,
        }
    }

    #[test]
    fn targets_move_linearly_and_jump_at_zero_length_stages() {
        let shape = Shape {
            model: Model::Closed,
            stages: vec![
                stage(10, 100.0),
                stage(10, 100.0),
                stage(0, 300.0),
                stage(10, 0.0),
            ],
            arrival: Arrival::Constant,
            max_in_flight: 1,
        };
        assert_eq!(shape.target_at(Duration::ZERO), 0.0);
        assert_eq!(shape.target_at(Duration::from_secs(5)), 50.0);
        assert_eq!(shape.target_at(Duration::from_secs(15)), 100.0);
        assert_eq!(shape.target_at(Duration::from_secs(20)), 300.0);
        assert_eq!(shape.target_at(Duration::from_secs(25)), 150.0);
        assert_eq!(shape.target_at(Duration::from_secs(99)), 0.0);
        assert_eq!(shape.duration(), Duration::from_secs(30));
        assert_eq!(shape.peak(), 300.0);
        shape.check().expect("present");
    }

    #[test]
    fn bad_stages_name_the_key() {
        let mut shape = Shape {
            model: Model::Closed,
            stages: vec![stage(10, 2.5)],
            arrival: Arrival::Constant,
            max_in_flight: 1,
        };
        assert_eq!(
            shape.check().expect_err("an error").0,
            "load.stages[0].target"
        );
        shape.stages = vec![stage(10, 0.0)];
        assert_eq!(shape.check().expect_err("an error").0, "load.stages");
        shape.stages = vec![stage(0, 10.0)];
        assert!(shape
            .check()
            .expect_err("an error")
            .1
            .contains("more than 0"));
        shape.stages = vec![stage(10, 20_000.0)];
        assert!(shape.check().expect_err("an error").1.contains("limit"));
        shape.stages = vec![];
        assert!(shape.check().is_err());
    }

    #[test]
    fn stages_flag_parses_and_refuses_nonsense() {
        let s = parse_stages("30s:10, hold=2m:200,0s:2000").expect("present");
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].name.as_deref(), Some("hold"));
        assert_eq!(s[1].duration, Duration::from_secs(120));
        assert_eq!(s[2].target, 2000.0);
        for bad in ["", "30s", "30s:x", "x:10", "30s:10,,1m:5", "=1s:2"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arrivals_and_think_times_parse() {
        assert_eq!(
            Arrival::parse("gamma:0.5").expect("present"),
            Arrival::Gamma(0.5)
        );
        for bad in ["gamma:0", "gamma:-1", "gamma:x", "gamma:1e-300", "bursty"] {
            assert!(Arrival::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Think::parse("uniform(1s, 3s)").expect("present"),
            Think::Uniform(Duration::from_secs(1), Duration::from_secs(3))
        );
        assert_eq!(
            Think::parse("lognormal(2s,0.5)").expect("present"),
            Think::LogNormal(Duration::from_secs(2), 0.5)
        );
        assert_eq!(Think::parse("0s").expect("present"), Think::None);
        for bad in ["uniform(3s,1s)", "lognormal(2s,-1)", "normal(1s,2s)", "2h"] {
            assert!(Think::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn think_draws_stay_in_their_distribution() {
        let mut rng = SmallRng::seed_from_u64(3);
        let u = Think::Uniform(Duration::from_millis(100), Duration::from_millis(300));
        let mut draws: Vec<f64> = (0..10_000)
            .map(|_| u.draw(&mut rng).as_secs_f64())
            .collect();
        assert!(draws.iter().all(|d| (0.1..=0.3).contains(d)));
        let ln = Think::LogNormal(Duration::from_secs(2), 0.5);
        draws = (0..20_000)
            .map(|_| ln.draw(&mut rng).as_secs_f64())
            .collect();
        draws.sort_by(f64::total_cmp);
        let median = draws[draws.len() / 2];
        assert!((median - 2.0).abs() < 0.05, "{median}");
        // log-space σ: the 84th percentile sits at median · e^σ.
        let p84 = draws[(draws.len() as f64 * 0.8413) as usize];
        assert!((p84 / median - 0.5f64.exp()).abs() < 0.05, "{p84}");
    }

    #[test]
    fn gamma_gaps_have_mean_one_and_the_shapes_spread() {
        let mut rng = SmallRng::seed_from_u64(11);
        for (k, cv) in [(0.5, 2f64.sqrt()), (1.0, 1.0), (4.0, 0.5)] {
            let a = Arrival::Gamma(k);
            let x: Vec<f64> = (0..100_000).map(|_| a.draw_unit(&mut rng)).collect();
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
            assert!((mean - 1.0).abs() < 0.02, "k={k} mean {mean}");
            assert!((sd / mean / cv - 1.0).abs() < 0.1, "k={k} cv {}", sd / mean);
        }
    }

    #[test]
    fn a_70_20_10_mix_passes_chi_squared_and_repeats_with_its_seed() {
        let wf = |name: &str, weight| Workflow {
            name: name.into(),
            weight,
            steps: vec![0],
        };
        let mix = [wf("a", 70.0), wf("b", 20.0), wf("c", 10.0)];
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..10_000)
                .map(|_| draw_workflow(&mix, &mut rng))
                .collect::<Vec<_>>()
        };
        let seq = draw(5);
        assert_eq!(seq, draw(5));
        assert_ne!(seq, draw(6));
        let mut counts = [0f64; 3];
        for i in &seq {
            counts[*i] += 1.0;
        }
        let chi2: f64 = counts
            .iter()
            .zip([7000.0, 2000.0, 1000.0])
            .map(|(o, e)| (o - e).powi(2) / e)
            .sum();
        // χ² with 2 degrees of freedom: 13.8 is the 0.1% critical value.
        assert!(chi2 < 13.8, "χ² = {chi2}, counts {counts:?}");
    }
}
