//! Prompt and output lengths drawn per request: `constant`, `uniform(a, b)`,
//! `normal(mean, sd)` (clipped to at least 1), `lognormal(median, sigma)` or
//! `empirical(FILE)` (one number a line, drawn uniformly), seeded by the
//! user's own generator; and the shared prefixes a prompt may open with.
//!
//! A step that sets `prompt_length` gets the variable `prompt` (that many
//! characters or tokens of prose, after its prefix); one that sets
//! `output_length` gets `max_tokens`.

use std::path::Path;
use std::sync::Arc;

use rand::Rng;

/// The longest prompt (characters or tokens) or output (tokens) a step may ask.
pub const MAX_LENGTH: f64 = 1_000_000.0;
/// Most values an `empirical` file may hold.
pub const MAX_EMPIRICAL: usize = 1_000_000;

/// A distribution of lengths.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always this.
    Constant(f64),
    /// Uniform over `[a, b]`.
    Uniform(f64, f64),
    /// Normal, clipped to `[1, MAX_LENGTH]`.
    Normal(f64, f64),
    /// Log-normal with this median and σ of the logarithm.
    LogNormal(f64, f64),
    /// Drawn uniformly from these values (from the named file).
    Empirical(String, Arc<Vec<f64>>),
}

impl Dist {
    /// Parse `300`, `uniform(100, 400)`, `normal(300, 50)`,
    /// `lognormal(300, 0.5)` or `empirical(lengths.txt)` (relative to `base`).
    pub fn parse(s: &str, base: Option<&Path>) -> Result<Dist, String> {
        let s = s.trim();
        let usage = "write 300, \"uniform(100, 400)\", \"normal(300, 50)\", \"lognormal(300, 0.5)\" or \"empirical(lengths.txt)\"";
        let args = |name: &str| -> Option<&str> {
            s.strip_prefix(name)?
                .trim()
                .strip_prefix('(')?
                .strip_suffix(')')
                .map(str::trim)
        };
        let two = |inner: &str| -> Result<(f64, f64), String> {
            let (a, b) = inner
                .split_once(',')
                .ok_or_else(|| format!("`{s}` needs two numbers; {usage}"))?;
            Ok((number(a, s)?, number(b, s)?))
        };
        let d = if let Some(inner) = args("uniform") {
            let (a, b) = two(inner)?;
            if a > b {
                return Err(format!("`{s}`: the low end is above the high end"));
            }
            Dist::Uniform(a, b)
        } else if let Some(inner) = args("normal") {
            let (m, sd) = two(inner)?;
            if sd <= 0.0 {
                return Err(format!("`{s}`: the standard deviation must be above 0"));
            }
            Dist::Normal(m, sd)
        } else if let Some(inner) = args("lognormal") {
            let (m, sigma) = two(inner)?;
            if !(sigma > 0.0 && sigma <= 3.0) {
                return Err(format!("`{s}`: sigma must be above 0 and at most 3"));
            }
            Dist::LogNormal(m, sigma)
        } else if let Some(file) = args("empirical") {
            let path = base.map_or_else(|| Path::new(file).to_path_buf(), |b| b.join(file));
            Dist::Empirical(file.to_string(), Arc::new(read_empirical(&path)?))
        } else if let Ok(n) = s.parse::<f64>() {
            Dist::Constant(n)
        } else {
            return Err(format!("`{s}` is not a length; {usage}"));
        };
        for v in d.bounds() {
            if !(1.0..=MAX_LENGTH).contains(&v) {
                return Err(format!(
                    "`{s}`: lengths must be from 1 to {MAX_LENGTH:.0}, not {v}"
                ));
            }
        }
        Ok(d)
    }

    /// The numbers given, each to be a length.
    fn bounds(&self) -> Vec<f64> {
        match self {
            Dist::Constant(c) => vec![*c],
            Dist::Uniform(a, b) => vec![*a, *b],
            Dist::Normal(m, _) | Dist::LogNormal(m, _) => vec![*m],
            Dist::Empirical(_, v) => {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                vec![lo, hi]
            }
        }
    }

    /// One draw, not rounded, within `[1, MAX_LENGTH]`.
    pub fn draw_f64(&self, rng: &mut impl Rng) -> f64 {
        let x = match self {
            Dist::Constant(c) => *c,
            Dist::Uniform(a, b) => a + (b - a) * rng.random::<f64>(),
            Dist::Normal(m, sd) => m + sd * super::shape::normal(rng),
            Dist::LogNormal(m, s) => m * (s * super::shape::normal(rng)).exp(),
            Dist::Empirical(_, v) => v[rng.random_range(0..v.len())],
        };
        x.clamp(1.0, MAX_LENGTH)
    }

    /// One draw, rounded to a whole length.
    pub fn draw(&self, rng: &mut impl Rng) -> u32 {
        self.draw_f64(rng).round() as u32
    }

    /// The probability of a draw at most `x` (before rounding): the
    /// distribution a realised sample is tested against.
    pub fn cdf(&self, x: f64) -> f64 {
        use statrs::distribution::{ContinuousCDF, Normal};
        let std_normal = |z: f64| Normal::new(0.0, 1.0).map_or(0.5, |n| n.cdf(z));
        if x < 1.0 {
            return 0.0;
        }
        match self {
            Dist::Constant(c) => f64::from(u8::from(x >= *c)),
            Dist::Uniform(a, b) if b > a => ((x - a) / (b - a)).clamp(0.0, 1.0),
            Dist::Uniform(a, _) => f64::from(u8::from(x >= *a)),
            // Clipped at 1: the mass below lands on 1.
            Dist::Normal(m, sd) => std_normal((x - m) / sd),
            Dist::LogNormal(m, s) => std_normal((x / m).ln() / s),
            Dist::Empirical(_, v) => v.iter().filter(|y| **y <= x).count() as f64 / v.len() as f64,
        }
    }

    /// The mean of a draw (clipping ignored), for planning.
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Constant(c) => *c,
            Dist::Uniform(a, b) => (a + b) / 2.0,
            Dist::Normal(m, _) => *m,
            Dist::LogNormal(m, s) => m * (s * s / 2.0).exp(),
            Dist::Empirical(_, v) => v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    /// As written in a scenario.
    pub fn describe(&self) -> String {
        match self {
            Dist::Constant(c) => format!("{c}"),
            Dist::Uniform(a, b) => format!("uniform({a}, {b})"),
            Dist::Normal(m, sd) => format!("normal({m}, {sd})"),
            Dist::LogNormal(m, s) => format!("lognormal({m}, {s})"),
            Dist::Empirical(f, v) => format!("empirical({f}: {} values)", v.len()),
        }
    }
}

fn number(s: &str, whole: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("`{whole}`: `{}` is not a number", s.trim()))
}

/// One positive number a line (blank lines and `#` comments skipped).
fn read_empirical(path: &Path) -> Result<Vec<f64>, String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the lengths file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let reader = std::io::BufReader::new(file);
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = String::from_utf8_lossy(&line);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let v = t
            .parse::<f64>()
            .ok()
            .filter(|v| (1.0..=MAX_LENGTH).contains(v))
            .ok_or_else(|| {
                format!(
                    "{} line {}: `{}` is not a length from 1 to {MAX_LENGTH:.0}",
                    path.display(),
                    i + 1,
                    t.chars().take(40).collect::<String>()
                )
            })?;
        if out.len() >= MAX_EMPIRICAL {
            return Err(format!(
                "{}: more than {MAX_EMPIRICAL} lengths",
                path.display()
            ));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(format!("{} holds no lengths", path.display()));
    }
    Ok(out)
}

/// The prompt lengths a calibration run sends, in characters, in turn.
pub const PROBE_CHARS: [u32; 2] = [256, 1024];

/// What a prompt length counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Characters of prose.
    Chars,
    /// The server's tokens: characters by the run's calibration.
    Tokens,
}

impl Unit {
    /// Its plural, as a report says it.
    pub fn noun(self) -> &'static str {
        match self {
            Unit::Chars => "characters",
            Unit::Tokens => "tokens",
        }
    }
}

/// Whose prefixes they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One set for everybody (a system prompt).
    Shared,
    /// One set per book (the book's bible).
    Book,
}

/// A prompt opens with one of `count` prefixes of `length` (in the prompt's unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prefix {
    /// How many different prefixes.
    pub count: u32,
    /// Each one's length, in the prompt's unit.
    pub length: u32,
    /// Shared by everybody or per book.
    pub scope: Scope,
}

/// A step's lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct Lengths {
    /// The prompt's length after its prefix (`prompt`).
    pub prompt: Option<Dist>,
    /// Characters or tokens.
    pub unit: Unit,
    /// The output's length in tokens (`max_tokens`).
    pub output: Option<Dist>,
    /// The shared prefix the prompt opens with.
    pub prefix: Option<Prefix>,
}

/// Characters per token and the template's own tokens, fitted from the
/// server's `usage.prompt_tokens` over prompts of known length.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Characters of prompt text per prompt token.
    pub chars_per_token: f64,
    /// Tokens the request has besides the drawn prompt (template, roles).
    pub overhead_tokens: f64,
    /// Requests it was fitted over (0: given with `--chars-per-token`).
    #[serde(default)]
    pub requests: u32,
}

impl Calibration {
    /// Fit `tokens = overhead + chars / chars_per_token` through
    /// `(chars, tokens)` pairs; `None` when the lengths do not differ or
    /// the slope is not positive.
    pub fn fit(points: &[(f64, f64)]) -> Option<Calibration> {
        let n = points.len() as f64;
        if points.len() < 2 {
            return None;
        }
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        (slope > 0.0).then(|| Calibration {
            chars_per_token: 1.0 / slope,
            overhead_tokens: my - slope * mx,
            requests: points.len() as u32,
        })
    }

    /// Characters for `tokens` prompt tokens (at least 1).
    pub fn chars(&self, tokens: u32) -> u32 {
        (f64::from(tokens) * self.chars_per_token).round().max(1.0) as u32
    }
}

/// One request's drawn prompt and output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawn {
    /// The prompt text (`prompt`): the prefix, then fresh prose.
    pub prompt: Option<String>,
    /// Its characters.
    pub prompt_chars: u32,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Which prefix it opens with (a key unique to the prefix's text).
    pub prefix: Option<u64>,
    /// The prefix's characters.
    pub prefix_chars: u32,
}

/// Characters for `n` of `unit`: tokens by the calibration (one a token
/// before one is made).
pub fn to_chars(n: u32, unit: Unit, cal: Option<Calibration>) -> u32 {
    match (unit, cal) {
        (Unit::Tokens, Some(c)) => c.chars(n),
        _ => n,
    }
}

impl Drawn {
    /// A prompt of `prefix` (its key and text), then `more` characters of
    /// fresh prose from a random place; and `max_tokens`.
    pub fn prompt(
        prefix: Option<(u64, String)>,
        more: usize,
        max_tokens: Option<u32>,
        data: &super::DataSet,
        rng: &mut impl Rng,
    ) -> Drawn {
        let (key, mut text) = prefix.map_or((None, String::new()), |(k, t)| (Some(k), t));
        let prefix_chars = if key.is_some() {
            text.chars().count() as u32
        } else {
            0
        };
        let offset = rng.random_range(0..1usize << 30);
        text.push_str(&data.filler(more, offset));
        Drawn {
            prompt_chars: prefix_chars + more as u32,
            prompt: Some(text),
            max_tokens,
            prefix: key,
            prefix_chars,
        }
    }
}

impl Lengths {
    /// Characters for a length in this step's unit.
    pub fn chars(&self, n: u32, cal: Option<Calibration>) -> u32 {
        to_chars(n, self.unit, cal)
    }

    /// Draw one request's lengths: `book_key` names the writer's book
    /// (for prefixes per book). `probe` replaces the prompt's drawn length
    /// by that many characters (the calibration's known lengths).
    pub fn draw(
        &self,
        cal: Option<Calibration>,
        data: &super::DataSet,
        rng: &mut impl Rng,
        book_key: u64,
        probe: Option<u32>,
    ) -> Drawn {
        let max_tokens = self.output.as_ref().map(|d| d.draw(rng));
        let Some(dist) = &self.prompt else {
            return Drawn {
                max_tokens,
                ..Drawn::default()
            };
        };
        let prefix = self.prefix.map(|p| {
            let k = u64::from(rng.random_range(0..p.count));
            let key = match p.scope {
                Scope::Shared => k,
                Scope::Book => mix(book_key ^ mix(k.wrapping_add(1))),
            };
            (
                key,
                prefix_text(key, self.chars(p.length, cal) as usize, data),
            )
        });
        let body = probe.unwrap_or_else(|| self.chars(dist.draw(rng), cal));
        Drawn::prompt(prefix, body as usize, max_tokens, data, rng)
    }
}

/// The text of prefix `key`: a tag naming it, then prose from a place
/// of its own, `chars` characters in all.
pub fn prefix_text(key: u64, chars: usize, data: &super::DataSet) -> String {
    let tag = format!("〔{key:x}〕");
    let n = chars.saturating_sub(tag.chars().count());
    let mut t: String = tag.chars().take(chars).collect();
    t.push_str(&data.filler(n, (mix(key) % (1 << 30)) as usize));
    t
}

/// A 64-bit mix (SplitMix64's finaliser).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The largest distance between a sample's distribution and `dist`
/// (the Kolmogorov–Smirnov statistic D).
pub fn ks_statistic(sample: &[f64], dist: &Dist) -> f64 {
    let mut xs = sample.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    let mut d: f64 = 0.0;
    for (i, x) in xs.iter().enumerate() {
        let f = dist.cdf(*x);
        d = d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n);
    }
    d
}

/// The KS statistic's critical value at level 0.01 for `n` draws.
pub fn ks_critical_01(n: usize) -> f64 {
    1.628 / (n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn every_form_parses_and_bad_ones_say_why() {
        assert_eq!(Dist::parse("300", None), Ok(Dist::Constant(300.0)));
        assert_eq!(
            Dist::parse("uniform(100, 400)", None),
            Ok(Dist::Uniform(100.0, 400.0))
        );
        assert_eq!(
            Dist::parse(" normal(300,50) ", None),
            Ok(Dist::Normal(300.0, 50.0))
        );
        assert_eq!(
            Dist::parse("lognormal(300, 0.5)", None),
            Ok(Dist::LogNormal(300.0, 0.5))
        );
        for (bad, says) in [
            ("-5", "from 1 to"),
            ("0", "from 1 to"),
            ("2000000", "from 1 to"),
            ("uniform(400, 100)", "low end"),
            ("normal(300, 0)", "standard deviation"),
            ("lognormal(300, 9)", "sigma"),
            ("uniform(1)", "two numbers"),
            ("poisson(3)", "not a length"),
            ("uniform(a, 3)", "`a` is not a number"),
            ("NaN", "from 1 to"),
        ] {
            let e = Dist::parse(bad, None).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_empirical_file_is_read_and_its_bad_line_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("l.txt"), "# lengths\n100\n\n200\n300\n").expect("write");
        let d = Dist::parse("empirical(l.txt)", Some(dir.path())).expect("parses");
        assert_eq!(d.mean(), 200.0);
        std::fs::write(dir.path().join("bad.txt"), "100\n-3\n").expect("write");
        let e = Dist::parse("empirical(bad.txt)", Some(dir.path())).expect_err("bad");
        assert!(e.contains("line 2") && e.contains("`-3`"), "{e}");
        std::fs::write(dir.path().join("empty.txt"), "\n# none\n").expect("write");
        let e = Dist::parse("empirical(empty.txt)", Some(dir.path())).expect_err("empty");
        assert!(e.contains("no lengths"), "{e}");
        let e = Dist::parse("empirical(missing.txt)", Some(dir.path())).expect_err("missing");
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn draws_pass_a_ks_test_against_each_distribution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let values: String = (0..500)
            .map(|i| format!("{}\n", 50 + (i * 37) % 900))
            .collect();
        std::fs::write(dir.path().join("e.txt"), values).expect("write");
        for spec in [
            "uniform(100, 400)",
            "normal(600, 120)",
            "lognormal(300, 0.6)",
            "empirical(e.txt)",
        ] {
            let d = Dist::parse(spec, Some(dir.path())).expect(spec);
            let mut rng = SmallRng::seed_from_u64(11);
            let sample: Vec<f64> = (0..4000).map(|_| d.draw_f64(&mut rng)).collect();
            let ks = ks_statistic(&sample, &d);
            assert!(ks < ks_critical_01(sample.len()), "{spec}: D = {ks}");
        }
    }

    #[test]
    fn the_ks_test_rejects_the_wrong_distribution() {
        let asked = Dist::parse("lognormal(300, 0.6)", None).expect("parses");
        let other = Dist::parse("normal(300, 60)", None).expect("parses");
        let mut rng = SmallRng::seed_from_u64(3);
        let sample: Vec<f64> = (0..2000).map(|_| other.draw_f64(&mut rng)).collect();
        assert!(ks_statistic(&sample, &asked) > ks_critical_01(sample.len()));
    }

    #[test]
    fn the_same_seed_draws_the_same_lengths() {
        let d = Dist::parse("lognormal(300, 0.6)", None).expect("parses");
        let a: Vec<u32> = {
            let mut r = SmallRng::seed_from_u64(5);
            (0..20).map(|_| d.draw(&mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = SmallRng::seed_from_u64(5);
            (0..20).map(|_| d.draw(&mut r)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|x| *x >= 1));
    }

    #[test]
    fn a_prompt_opens_with_its_prefix_and_is_as_long_as_drawn() {
        let data = super::super::DataSet::bundled();
        let l = Lengths {
            prompt: Some(Dist::Constant(100.0)),
            unit: Unit::Tokens,
            output: Some(Dist::Constant(64.0)),
            prefix: Some(Prefix {
                count: 2,
                length: 50,
                scope: Scope::Book,
            }),
        };
        let cal = Some(Calibration {
            chars_per_token: 1.5,
            overhead_tokens: 10.0,
            requests: 4,
        });
        let mut rng = SmallRng::seed_from_u64(1);
        let a = l.draw(cal, &data, &mut rng, 7, None);
        assert_eq!(a.prompt_chars, 75 + 150);
        assert_eq!(a.max_tokens, Some(64));
        let text = a.prompt.expect("a prompt");
        let key = a.prefix.expect("a prefix");
        assert!(text.starts_with(&prefix_text(key, 75, &data)));
        // Another book never shares the first's prefixes.
        let keys_b: Vec<u64> = (0..20)
            .filter_map(|_| l.draw(cal, &data, &mut rng, 8, None).prefix)
            .collect();
        assert!(!keys_b.contains(&key));
        let probe = l.draw(cal, &data, &mut rng, 7, Some(300));
        assert_eq!(probe.prompt_chars, 75 + 300);
    }

    #[test]
    fn a_calibration_recovers_the_line_and_refuses_one_length() {
        // Two tokens for every three characters, 40 tokens of template.
        let pts: Vec<(f64, f64)> = [200.0, 1000.0, 200.0, 1000.0]
            .iter()
            .map(|c| (*c, 40.0 + c * 2.0 / 3.0))
            .collect();
        let c = Calibration::fit(&pts).expect("fits");
        assert!((c.chars_per_token - 1.5).abs() < 1e-9);
        assert!((c.overhead_tokens - 40.0).abs() < 1e-9);
        assert_eq!(c.chars(100), 150);
        assert!(Calibration::fit(&[(200.0, 10.0), (200.0, 12.0)]).is_none());
        assert!(Calibration::fit(&[(200.0, 10.0)]).is_none());
    }
}
