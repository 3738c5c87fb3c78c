//! The load plan: which virtual user (closed loop) or which arrival (open
//! loop) starts when, with which token. Every load shape is a way of
//! building one; the engine only starts work as the plan says.
//!
//! - A fixed number of users starts over the first second of the warm-up,
//!   so thousands of streams do not tick in lockstep, and runs to the end.
//! - Closed-loop stages give each user the spans in which the target
//!   covers it: user `k` (0-based) is active while the target is at least
//!   `k + 1`, so a ramp adds users one by one at the exact crossing times
//!   and a ramp-down retires the newest first.
//! - Open-loop stages give a lazy sequence of arrival times: unit-mean gaps
//!   (constant, exponential or gamma) in "operational time", mapped through
//!   the inverse of the cumulative rate. Nothing is materialised: a day at
//!   500 starts per second is a loop, not a list.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::scenario::{Arrival, LoadSpec, Model, Shape};
use crate::tokens::UserToken;

/// When a user is active: from `start` until `end` (`None`: the run's end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// From the run's start.
    pub start: Duration,
    /// From the run's start; `None` until the run ends.
    pub end: Option<Duration>,
}

/// One virtual user of the plan.
#[derive(Debug, Clone)]
pub struct UserStart {
    /// Its number, which also seeds its draws.
    pub vu: u32,
    /// When it starts, from the run's start (its first span's start).
    pub at: Duration,
    /// When it is active, in order; never empty.
    pub spans: Vec<Span>,
    /// Its token (round-robin over the tokens file), if the scenario uses one.
    pub token: Option<UserToken>,
}

/// Who starts when.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Users that loop their workflows while their spans last.
    Closed(Vec<UserStart>),
    /// Workflow starts at the times an [`Arrivals`] sequence gives.
    Open(Shape),
    /// A trace's requests at their own times.
    Replay(std::sync::Arc<crate::scenario::trace::Replay>),
}

impl Schedule {
    /// The plan of a load: a shape's, or today's fixed users.
    /// A shard's plan is the global one with every other user left out
    /// (its users keep their global numbers, seeds and tokens); an open
    /// loop's arrivals are thinned as they are dispatched.
    pub fn of(load: &LoadSpec, tokens: &[UserToken]) -> Self {
        let mine = |u: &UserStart| load.shard.is_none_or(|s| s.takes(u64::from(u.vu)));
        if let Some(r) = &load.replay {
            return Schedule::Replay(r.clone());
        }
        match &load.shape {
            None => Schedule::Closed(Self::fixed(load, tokens).into_iter().filter(mine).collect()),
            Some(s) if s.model == Model::Closed => {
                Schedule::Closed(Self::staged(s, tokens).into_iter().filter(mine).collect())
            }
            Some(s) => Schedule::Open(s.clone()),
        }
    }

    /// `load.concurrency` users, started evenly over [`START_SPREAD`] (the
    /// warm-up when shorter); without a warm-up, over 10 ms a user at most
    /// and a tenth of a timed run, so a short or request-count run still
    /// has all its users at once soon; all at once with `start_together`.
    fn fixed(load: &LoadSpec, tokens: &[UserToken]) -> Vec<UserStart> {
        let mut spread = crate::scenario::START_SPREAD;
        if load.warmup.is_zero() {
            spread = spread.min(Duration::from_millis(10) * load.concurrency);
            if let Some(d) = load.duration {
                spread = spread.min(d / 10);
            }
        } else {
            spread = spread.min(load.warmup);
        }
        if load.start_together {
            spread = Duration::ZERO;
        }
        let n = load.concurrency.max(1);
        (0..load.concurrency)
            .map(|vu| {
                let at = spread * vu / n;
                UserStart {
                    vu,
                    at,
                    spans: vec![Span {
                        start: at,
                        end: None,
                    }],
                    token: token(tokens, u64::from(vu)),
                }
            })
            .collect()
    }

    /// One user per level the stages reach, active while the target covers it.
    fn staged(shape: &Shape, tokens: &[UserToken]) -> Vec<UserStart> {
        let peak = shape.peak() as u32;
        (0..peak)
            .filter_map(|vu| {
                let spans = spans(shape, f64::from(vu) + 1.0);
                Some(UserStart {
                    vu,
                    at: spans.first()?.start,
                    spans,
                    token: token(tokens, u64::from(vu)),
                })
            })
            .collect()
    }
}

/// The token of user (or arrival) `n`, round-robin.
pub fn token(tokens: &[UserToken], n: u64) -> Option<UserToken> {
    (!tokens.is_empty()).then(|| tokens[(n % tokens.len() as u64) as usize].clone())
}

/// The spans in which the target is at least `level`.
fn spans(shape: &Shape, level: f64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut active = false;
    let mut from = 0.0;
    for ((start, end), stage) in shape.bounds().into_iter().zip(&shape.stages) {
        let to = stage.target;
        let dur = end - start;
        // The moment within the stage at which the target passes `level`.
        let crossing = |num: f64, den: f64| {
            if dur.is_zero() || den == 0.0 {
                start
            } else {
                start + dur.mul_f64((num / den).clamp(0.0, 1.0))
            }
        };
        if !active && to >= level {
            out.push(Span {
                start: crossing(level - from, to - from),
                end: None,
            });
            active = true;
        } else if active && to < level {
            if let Some(last) = out.last_mut() {
                // The target drops below the level once it is past `from − level`.
                let t = crossing(from - level, from - to);
                last.end = Some(t.max(last.start));
            }
            active = false;
        }
        from = to;
    }
    out
}

/// One open-loop arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrivalAt {
    /// Its number from 0, which also seeds its draws.
    pub n: u64,
    /// When it is due, from the run's start.
    pub at: Duration,
}

/// The arrival times of an open-loop shape, lazily.
#[derive(Debug)]
pub struct Arrivals {
    shape: Shape,
    bounds: Vec<(Duration, Duration)>,
    rng: SmallRng,
    /// The stage the cursor is in.
    stage: usize,
    /// The cursor, seconds from the run's start.
    t: f64,
    n: u64,
}

impl Arrivals {
    /// The sequence for `shape`, seeded.
    pub fn new(shape: &Shape, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xA11C_E5ED);
        let mut a = Arrivals {
            bounds: shape.bounds(),
            shape: shape.clone(),
            rng: SmallRng::seed_from_u64(0),
            stage: 0,
            t: 0.0,
            n: 0,
        };
        // A constant process starts half a gap in, not at 0 with a burst
        // at every stage border; a random one starts from a random phase.
        let first = match shape.arrival {
            Arrival::Constant => 0.5,
            other => other.draw_unit(&mut rng),
        };
        a.rng = rng;
        a.t = a.advance(first).unwrap_or(f64::INFINITY);
        a
    }

    /// Move the cursor on by `work` units of cumulative rate; `None` past the end.
    fn advance(&mut self, mut work: f64) -> Option<f64> {
        let mut t = self.t;
        while self.stage < self.bounds.len() {
            let (s, e) = self.bounds[self.stage];
            let (s, e) = (s.as_secs_f64(), e.as_secs_f64());
            let d = e - s;
            if d <= 0.0 || t >= e {
                self.stage += 1;
                continue;
            }
            let from = if self.stage == 0 {
                0.0
            } else {
                self.shape.stages[self.stage - 1].target
            };
            let to = self.shape.stages[self.stage].target;
            let slope = (to - from) / d;
            let tau0 = (t - s).max(0.0);
            let a = from + slope * tau0;
            let left = e - s - tau0;
            // Work available in the rest of this stage: ∫ (a + slope·τ) dτ.
            let avail = a * left + slope * left * left / 2.0;
            if avail < work {
                work -= avail;
                t = e;
                self.stage += 1;
                continue;
            }
            // Solve a·τ + slope·τ²/2 = work for τ in the stable form.
            let disc = (a * a + 2.0 * slope * work).max(0.0);
            let tau = if a + disc.sqrt() > 0.0 {
                2.0 * work / (a + disc.sqrt())
            } else {
                0.0
            };
            return Some(s + tau0 + tau.min(left));
        }
        None
    }
}

impl Iterator for Arrivals {
    type Item = ArrivalAt;

    fn next(&mut self) -> Option<ArrivalAt> {
        if !self.t.is_finite() {
            return None;
        }
        let at = ArrivalAt {
            n: self.n,
            at: Duration::from_secs_f64(self.t),
        };
        self.n += 1;
        let gap = self.shape.arrival.draw_unit(&mut self.rng);
        self.t = self.advance(gap).unwrap_or(f64::INFINITY);
        Some(at)
    }
}

/// The intended load at `t`: the fixed user count, or the shape's target
/// (whole users for a closed loop: user `k` runs once the target reaches
/// `k + 1`); nothing after the run's end.
/// A shard intends its share: its users among the global ones, or its
/// part of the rate.
pub fn intended_at(load: &LoadSpec, t: Duration) -> f64 {
    if load.duration.is_some_and(|d| t >= d) {
        return 0.0;
    }
    if let Some(r) = &load.replay {
        return r.rate_at(t);
    }
    let users = |n: f64| match load.shard {
        None => n,
        Some(s) => s.users_of(n as u64) as f64,
    };
    match &load.shape {
        None => users(f64::from(load.concurrency)),
        Some(s) if s.model == Model::Closed => users(s.target_at(t).floor()),
        Some(s) => s.target_at(t) / f64::from(load.shard.map_or(1, |s| s.count.max(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Stage, Think};

    fn stage(ms: u64, target: f64) -> Stage {
        Stage {
            name: None,
            duration: Duration::from_millis(ms),
            target,
        }
    }

    fn shape(model: Model, arrival: Arrival, stages: Vec<Stage>) -> Shape {
        Shape {
            model,
            stages,
            arrival,
            max_in_flight: 100,
        }
    }

    #[test]
    fn fixed_users_spread_over_the_first_second_with_round_robin_tokens() {
        let mut load = LoadSpec::fixed(4, Duration::from_secs(10));
        load.warmup = Duration::from_secs(5);
        load.think_time = Think::None;
        let tokens = crate::tokens::generated(3);
        let Schedule::Closed(users) = Schedule::of(&load, &tokens) else {
            panic!("closed")
        };
        let at: Vec<u128> = users.iter().map(|u| u.at.as_millis()).collect();
        assert_eq!(at, [0, 250, 500, 750]);
        assert!(users
            .iter()
            .all(|u| u.spans.len() == 1 && u.spans[0].end.is_none()));
        let ids: Vec<&str> = users
            .iter()
            .map(|u| u.token.as_ref().map_or("", |t| t.user_id.as_str()))
            .collect();
        assert_eq!(ids, ["demo-1", "demo-2", "demo-3", "demo-1"]);
        // Without a warm-up (and in a run of a request count) users are
        // spread all the same; only `--start-together` starts them at once.
        load.warmup = Duration::ZERO;
        let Schedule::Closed(spread) = Schedule::of(&load, &[]) else {
            panic!("closed")
        };
        let at: Vec<u128> = spread.iter().map(|u| u.at.as_millis()).collect();
        assert_eq!(at, [0, 10, 20, 30]);
        assert!(spread.iter().all(|u| u.token.is_none()));
        load.start_together = true;
        let Schedule::Closed(burst) = Schedule::of(&load, &[]) else {
            panic!("closed")
        };
        assert!(burst.iter().all(|u| u.at.is_zero()));
    }

    /// 0 → 10 over 10 s, hold 10 s, jump to 20, down to 0 over 10 s, up to 5 over 5 s.
    fn up_down_up() -> Shape {
        shape(
            Model::Closed,
            Arrival::Constant,
            vec![
                stage(10_000, 10.0),
                stage(10_000, 10.0),
                stage(0, 20.0),
                stage(10_000, 0.0),
                stage(5_000, 5.0),
            ],
        )
    }

    #[test]
    fn a_ramp_adds_users_at_the_crossings_and_a_ramp_down_retires_the_newest() {
        let s = up_down_up();
        let mut load = LoadSpec::fixed(1, Duration::from_secs(1));
        load.set_shape(s.clone());
        let Schedule::Closed(users) = Schedule::of(&load, &[]) else {
            panic!("closed")
        };
        assert_eq!(users.len(), 20);
        let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        // User 0 (level 1) starts at 1 s, leaves at 29.5 s (20 → 0 over 10 s passes 1 at 9.5 s),
        // and comes back at 31 s.
        let u0: Vec<(f64, Option<f64>)> = users[0]
            .spans
            .iter()
            .map(|s| (secs(s.start), s.end.map(secs)))
            .collect();
        assert_eq!(u0, [(1.0, Some(29.5)), (31.0, None)]);
        assert_eq!(secs(users[9].at), 10.0);
        // Levels 11..20 come with the jump at 20 s; level 20 leaves first.
        assert_eq!(secs(users[19].at), 20.0);
        assert_eq!(users[19].spans[0].end.map(secs), Some(20.0));
        assert_eq!(users[10].spans[0].end.map(secs), Some(24.5));
        assert_eq!(users[5].spans.len(), 1);
        // At any moment, the active users are the target, floored.
        for t in (0..35_000).step_by(250) {
            let t = Duration::from_millis(t);
            let active = users
                .iter()
                .filter(|u| {
                    u.spans
                        .iter()
                        .any(|s| s.start <= t && s.end.is_none_or(|e| t < e))
                })
                .count();
            let intended = s.target_at(t).floor() as usize;
            assert!(
                active.abs_diff(intended) <= 1,
                "{t:?}: {active} vs {intended}"
            );
        }
    }

    #[test]
    fn constant_arrivals_follow_a_ramp_exactly() {
        // 0 → 100/s over 10 s: 500 arrivals, the k-th at √(k/5)·... (Λ(t) = 5t²).
        let s = shape(Model::Open, Arrival::Constant, vec![stage(10_000, 100.0)]);
        let a: Vec<ArrivalAt> = Arrivals::new(&s, 1).collect();
        assert_eq!(a.len(), 500);
        for x in &a {
            let expected = ((x.n as f64 + 0.5) / 5.0).sqrt();
            assert!((x.at.as_secs_f64() - expected).abs() < 1e-6, "{x:?}");
        }
        // Through a hold and a jump: 10/s for 2 s, then 50/s for 2 s.
        let s = shape(
            Model::Open,
            Arrival::Constant,
            vec![
                stage(0, 10.0),
                stage(2_000, 10.0),
                stage(0, 50.0),
                stage(2_000, 50.0),
            ],
        );
        assert_eq!(Arrivals::new(&s, 1).count(), 120);
    }

    /// Kolmogorov–Smirnov statistic of gaps against the exponential.
    fn ks_exponential(gaps: &mut [f64], rate: f64) -> f64 {
        gaps.sort_by(f64::total_cmp);
        let n = gaps.len() as f64;
        gaps.iter()
            .enumerate()
            .map(|(i, g)| {
                let f = 1.0 - (-rate * g).exp();
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn poisson_arrivals_pass_a_ks_test_with_the_mean_rate_within_5_percent() {
        let s = shape(
            Model::Open,
            Arrival::Poisson,
            vec![stage(0, 200.0), stage(60_000, 200.0)],
        );
        let times: Vec<f64> = Arrivals::new(&s, 9).map(|a| a.at.as_secs_f64()).collect();
        let rate = times.len() as f64 / 60.0;
        assert!((rate / 200.0 - 1.0).abs() < 0.05, "rate {rate}");
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let d = ks_exponential(&mut gaps, 200.0);
        // The 1% critical value is 1.63/√n.
        let crit = 1.63 / (gaps.len() as f64).sqrt();
        assert!(d < crit, "KS D = {d}, critical {crit}");
        // A constant process at the same rate fails the same test.
        let c = shape(
            Model::Open,
            Arrival::Constant,
            vec![stage(0, 200.0), stage(60_000, 200.0)],
        );
        let times: Vec<f64> = Arrivals::new(&c, 9).map(|a| a.at.as_secs_f64()).collect();
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(ks_exponential(&mut gaps, 200.0) > crit);
    }

    #[test]
    fn gamma_half_arrivals_have_a_cv_of_root_two_and_repeat_with_their_seed() {
        let s = shape(
            Model::Open,
            Arrival::Gamma(0.5),
            vec![stage(0, 100.0), stage(300_000, 100.0)],
        );
        let times: Vec<f64> = Arrivals::new(&s, 4).map(|a| a.at.as_secs_f64()).collect();
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        let cv = sd / mean;
        assert!((cv / 2f64.sqrt() - 1.0).abs() < 0.1, "cv {cv}");
        let again: Vec<f64> = Arrivals::new(&s, 4)
            .take(100)
            .map(|a| a.at.as_secs_f64())
            .collect();
        assert_eq!(again[..], times[..100]);
        let other: Vec<f64> = Arrivals::new(&s, 5)
            .take(100)
            .map(|a| a.at.as_secs_f64())
            .collect();
        assert_ne!(other[..], times[..100]);
    }

    #[test]
    fn the_shards_of_a_plan_are_the_single_process_plan_split() {
        use crate::scenario::Shard;
        let shards = |n: u32| (0..n).map(move |index| Shard { index, count: n });
        // Closed: every user exactly once, with its own number, start and token.
        let mut load = LoadSpec::fixed(10, Duration::from_secs(10));
        load.warmup = Duration::from_secs(1);
        let tokens = crate::tokens::generated(10);
        let key = |u: &UserStart| (u.vu, u.at, u.token.as_ref().map(|t| t.user_id.clone()));
        let Schedule::Closed(all) = Schedule::of(&load, &tokens) else {
            panic!("closed")
        };
        let mut union = Vec::new();
        for sh in shards(3) {
            load.shard = Some(sh);
            let Schedule::Closed(mine) = Schedule::of(&load, &tokens) else {
                panic!("closed")
            };
            assert_eq!(mine.len() as u64, sh.users_of(10));
            union.extend(mine.iter().map(key));
        }
        union.sort();
        assert_eq!(union, all.iter().map(key).collect::<Vec<_>>());
        // Their intended loads add up to the whole plan's.
        let total: f64 = shards(3)
            .map(|sh| {
                load.shard = Some(sh);
                intended_at(&load, Duration::from_secs(2))
            })
            .sum();
        assert_eq!(total, 10.0);
        // Open: one Poisson sequence thinned, not three independent ones:
        // the union is the single process's sequence, time for time.
        let open = shape(Model::Open, Arrival::Poisson, vec![stage(20_000, 50.0)]);
        let whole: Vec<ArrivalAt> = Arrivals::new(&open, 7).collect();
        let mut union: Vec<ArrivalAt> = shards(4)
            .flat_map(|sh| Arrivals::new(&open, 7).filter(move |a| sh.takes(a.n)))
            .collect();
        union.sort_by_key(|a| a.n);
        assert_eq!(union, whole);
        assert!(whole.len() > 400, "{}", whole.len());
    }
}
