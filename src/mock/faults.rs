//! Faults the mock injects, drawn once per request.

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;
use rand::Rng;

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An error status with a JSON error body (401, 404, 422, 500, 503, …).
    Status(u16),
    /// 429 with `Retry-After`.
    RateLimited,
    /// Headers and a role-only chunk, then silence (no first token).
    Hang,
    /// The connection is cut halfway through the stream.
    Disconnect,
    /// One event halfway through the stream is not valid JSON.
    Malformed,
    /// Half the tokens, then silence (an idle stream).
    Stall,
    /// A JSON answer that is not JSON (for `json` steps such as create book).
    BadJson,
    /// Content forever, never the end marker.
    Endless,
    /// Half the tokens, then the server's error inside the stream (an
    /// error object, or Anthropic's `event: error`), and the end.
    StreamError,
}

impl Fault {
    /// The status of an error-response fault; `None` for stream faults.
    pub fn status(self) -> Option<StatusCode> {
        match self {
            Fault::Status(s) => StatusCode::from_u16(s).ok(),
            Fault::RateLimited => Some(StatusCode::TOO_MANY_REQUESTS),
            Fault::Hang
            | Fault::Disconnect
            | Fault::Malformed
            | Fault::Stall
            | Fault::BadJson
            | Fault::Endless
            | Fault::StreamError => None,
        }
    }

    /// The `error.code` of the JSON error body.
    pub fn code(self) -> &'static str {
        match self {
            Fault::Status(401) => "unauthorized",
            Fault::Status(404) => "not_found",
            Fault::Status(422) => "invalid_body",
            Fault::Status(503) => "overloaded",
            Fault::Status(_) => "internal_error",
            Fault::RateLimited => "rate_limited",
            Fault::Hang
            | Fault::Disconnect
            | Fault::Malformed
            | Fault::Stall
            | Fault::BadJson
            | Fault::Endless
            | Fault::StreamError => "stream_fault",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status(s) => write!(f, "{s}"),
            Fault::RateLimited => f.write_str("429"),
            Fault::Hang => f.write_str("hang"),
            Fault::Disconnect => f.write_str("disconnect"),
            Fault::Malformed => f.write_str("malformed"),
            Fault::Stall => f.write_str("stall"),
            Fault::BadJson => f.write_str("badjson"),
            Fault::Endless => f.write_str("endless"),
            Fault::StreamError => f.write_str("error"),
        }
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "429" => Ok(Fault::RateLimited),
            "hang" => Ok(Fault::Hang),
            "disconnect" => Ok(Fault::Disconnect),
            "malformed" => Ok(Fault::Malformed),
            "stall" => Ok(Fault::Stall),
            "badjson" => Ok(Fault::BadJson),
            "endless" => Ok(Fault::Endless),
            "error" => Ok(Fault::StreamError),
            other => match other.parse::<u16>() {
                Ok(code) if (400..600).contains(&code) => Ok(Fault::Status(code)),
                _ => Err(format!(
                    "unknown fault `{other}`: use an HTTP status 400-599 (429 adds Retry-After), `hang`, `stall`, `disconnect`, `malformed`, `badjson`, `endless` or `error` (the server's error mid-stream)"
                )),
            },
        }
    }
}

/// Fault probabilities per request; they add up to at most 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRates(pub Vec<(Fault, f64)>);

impl FaultRates {
    /// Draw at most one fault.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<Fault> {
        if self.0.is_empty() {
            return None;
        }
        let x: f64 = rng.random();
        let mut acc = 0.0;
        for &(f, p) in &self.0 {
            acc += p;
            if x < acc {
                return Some(f);
            }
        }
        None
    }
}

impl FromStr for FaultRates {
    type Err = String;
    /// `500=0.02,429=0.01,hang=0.005`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KIND=RATE (for example `500=0.02`)"))?;
            let fault: Fault = k.parse()?;
            let rate: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a rate between 0 and 1"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("rate `{v}` for `{k}` is not between 0 and 1"));
            }
            out.push((fault, rate));
        }
        let total: f64 = out.iter().map(|(_, p)| p).sum();
        if total > 1.0 + 1e-9 {
            return Err(format!("the rates add up to {total}, more than 1"));
        }
        Ok(FaultRates(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_and_draws_at_the_configured_rate() {
        let rates: FaultRates = "500=0.2, 429=0.1,hang=0.1".parse().expect("valid");
        assert_eq!(rates.0.len(), 3);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| rates.draw(&mut rng) == Some(Fault::Status(500)))
            .count();
        let share = hits as f64 / f64::from(n);
        assert!((0.18..0.22).contains(&share), "{share}");
    }

    #[test]
    fn rejects_bad_specs() {
        assert!("500".parse::<FaultRates>().is_err());
        assert!("700=0.1".parse::<FaultRates>().is_err());
        assert!("500=2".parse::<FaultRates>().is_err());
        assert!("500=0.6,503=0.6".parse::<FaultRates>().is_err());
        assert!("boom=0.1".parse::<FaultRates>().is_err());
    }
}
