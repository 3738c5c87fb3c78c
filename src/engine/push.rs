//! `--metrics-push URL`: the live endpoint's series sent with the
//! Prometheus remote-write protocol (1.0: a snappy-compressed protobuf
//! `WriteRequest`) every interval during the run and once at its end, so a
//! CI job or a shard that ends before any scrape still leaves its figures
//! in Prometheus (with `--web.enable-remote-write-receiver`), Mimir, Thanos
//! or VictoriaMetrics. A push that fails is counted and said at the end; it
//! never stops or slows the run.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::stats::prom;

/// Longest one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how often to push.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTarget {
    /// The receiver's URL (`http://host:9090/api/v1/write`), checked like
    /// the target.
    pub url: reqwest::Url,
    /// How often during the run.
    pub interval: Duration,
}

/// How the pushes went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pushed {
    /// Pushes sent.
    pub pushes: u64,
    /// Pushes that failed (no answer in time, or not a 2xx).
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn field(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(number << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The protobuf `WriteRequest` of `samples` at `timestamp_ms`, each series
/// with `extra` labels (`job`), its labels sorted by name as receivers
/// require.
pub fn write_request(
    samples: &[prom::Sample],
    extra: &[(&str, &str)],
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut series = Vec::new();
    let mut label = Vec::new();
    let mut sample = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.value.is_finite() || s.value.is_nan())
    {
        series.clear();
        let mut labels: Vec<(&str, &str)> = vec![("__name__", s.name.as_str())];
        labels.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        labels.extend(extra.iter().filter(|(k, _)| s.label(k).is_none()).copied());
        labels.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in labels {
            label.clear();
            field(1, k.as_bytes(), &mut label);
            field(2, v.as_bytes(), &mut label);
            field(1, &label, &mut series);
        }
        sample.clear();
        // value: double, field 1, 64-bit wire type.
        sample.push(1 << 3 | 1);
        sample.extend_from_slice(&s.value.to_le_bytes());
        // timestamp: int64, field 2, varint (two's complement for negatives).
        sample.push(2 << 3);
        varint(timestamp_ms as u64, &mut sample);
        field(2, &sample, &mut series);
        field(1, &series, &mut out);
    }
    out
}

/// One push of `text` (the live exposition) now.
async fn push_once(client: &reqwest::Client, url: &reqwest::Url, text: &str) -> Result<(), String> {
    let exposition = prom::parse(text).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = write_request(&exposition.samples, &[("job", "flora-gate")], now);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&body)
        .map_err(|e| e.to_string())?;
    let sent = client
        .post(url.clone())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(compressed)
        .timeout(PUSH_TIMEOUT)
        .send()
        .await
        .map_err(|e| crate::target::redact_userinfo(&e.to_string()))?;
    let status = sent.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = sent.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        Err(format!("{status}: {}", body.trim()))
    }
}

/// Push `exposition()` every interval until `stop`, then once more with the
/// final figures.
pub async fn run(
    client: reqwest::Client,
    target: PushTarget,
    exposition: impl Fn() -> String,
    stop: CancellationToken,
) -> Pushed {
    let mut pushed = Pushed::default();
    let record = |r: Result<(), String>, p: &mut Pushed| {
        p.pushes += 1;
        if let Err(e) = r {
            p.failures += 1;
            p.last_error = Some(e);
        }
    };
    let mut tick = tokio::time::interval(target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                let r = push_once(&client, &target.url, &exposition()).await;
                record(r, &mut pushed);
            }
        }
    }
    let r = push_once(&client, &target.url, &exposition()).await;
    record(r, &mut pushed);
    pushed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_is_the_protobuf_receivers_read() {
        let e = prom::parse("m{b=\"2\",a=\"1\"} 1.5\n").expect("parses");
        let bytes = write_request(&e.samples, &[("job", "j")], 1000);
        // WriteRequest.timeseries (1, LD) → TimeSeries.
        assert_eq!(bytes[0], 0x0a);
        let ts = &bytes[2..];
        assert_eq!(usize::from(bytes[1]), ts.len());
        // Labels in name order: __name__, a, b, job.
        let text = String::from_utf8_lossy(ts);
        let order: Vec<usize> = ["__name__", "\u{1}a", "\u{1}b", "job"]
            .iter()
            .map(|l| text.find(l).expect("label present"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // The sample: value 1.5 as a little-endian double, timestamp 1000.
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.5f64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 0xe8, 0x07]);
        let at = ts.len() - sample.len();
        assert_eq!(&ts[at..], &sample[..]);
        assert_eq!(ts[at - 2], 0x12, "TimeSeries.samples is field 2");
        assert_eq!(usize::from(ts[at - 1]), sample.len());
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven() {
        let mut v = Vec::new();
        varint(300, &mut v);
        assert_eq!(v, [0xac, 0x02]);
        v.clear();
        varint(1_796_441_438_000, &mut v);
        let mut back = 0u64;
        for (i, b) in v.iter().enumerate() {
            back |= u64::from(b & 0x7f) << (7 * i);
        }
        assert_eq!(back, 1_796_441_438_000);
    }
}
