//! Resources as people read them, derived from the scraped series: host
//! CPU busy % (all cores, and the busiest core), memory used %, network
//! bytes/s per interface and disk busy % (node_exporter); each endpoint's
//! process CPU % and resident memory; GPU utilisation, memory and power
//! (DCGM); the database pool's connections in use, idle and waiting.
//!
//! They are read from the series' summaries (counters' rates, gauges'
//! means and highs) over one stretch, the run, a window or a stage, so a
//! merged result's resources come from its merged series the same way.

use std::collections::BTreeMap;

use super::server::{Figures, ServerMetrics, ServerSeries};
use super::usage::{Gpu, Host, Interface, Pool, Process, Resources, Usage};

/// A series' name and labels, read from its key (`name{a="b"}`).
fn parts(key: &str) -> (String, BTreeMap<String, String>) {
    match crate::stats::prom::parse(&format!("{key} 0\n")) {
        Ok(e) => match e.samples.into_iter().next() {
            Some(s) => (s.name, s.labels.into_iter().collect()),
            None => (key.to_string(), BTreeMap::new()),
        },
        Err(_) => (key.to_string(), BTreeMap::new()),
    }
}

/// The series of one stretch: endpoint, name, labels and figures.
struct Read<'a> {
    endpoint: usize,
    name: String,
    labels: BTreeMap<String, String>,
    figures: &'a Figures,
}

/// `host:port` of each endpoint, for people.
pub fn endpoint_names(m: &ServerMetrics) -> Vec<String> {
    m.endpoints
        .iter()
        .map(|e| {
            reqwest::Url::parse(&e.url).map_or_else(
                |_| e.url.clone(),
                |u| match (u.host_str(), u.port_or_known_default()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    _ => e.url.clone(),
                },
            )
        })
        .collect()
}

/// Resources over one stretch: the figures `pick` gives of each series.
pub fn usage_of(m: &ServerMetrics, pick: &dyn Fn(&ServerSeries) -> Option<&Figures>) -> Usage {
    let read: Vec<Read<'_>> = m
        .series
        .iter()
        .filter_map(|s| {
            let figures = pick(s)?;
            let (name, labels) = parts(&s.series);
            Some(Read {
                endpoint: s.endpoint as usize,
                name,
                labels,
                figures,
            })
        })
        .collect();
    usage(&read, &endpoint_names(m))
}

/// `m` with its resources derived.
pub fn with_resources(mut m: ServerMetrics) -> ServerMetrics {
    m.resources = resources(&m);
    m
}

/// Resources over the run, each window and each stage of `m`.
pub fn resources(m: &ServerMetrics) -> Option<Resources> {
    let stretch = |pick: &dyn Fn(&ServerSeries) -> Option<&Figures>| usage_of(m, pick);
    let overall = stretch(&|s| Some(&s.overall));
    if overall.is_empty() {
        return None;
    }
    let count = |f: fn(&ServerSeries) -> usize| m.series.iter().map(f).max().unwrap_or(0);
    let windows = (0..count(|s| s.windows.len()))
        .map(|i| stretch(&|s| s.windows.get(i)))
        .collect();
    let stages = (0..count(|s| s.stages.len()))
        .map(|i| stretch(&|s| s.stages.get(i)))
        .collect();
    Some(Resources {
        overall,
        windows,
        stages,
    })
}

fn usage(read: &[Read<'_>], names: &[String]) -> Usage {
    let name_of = |i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("endpoint {i}"))
    };
    let endpoints: std::collections::BTreeSet<usize> = read.iter().map(|r| r.endpoint).collect();
    let mut out = Usage::default();
    for &e in &endpoints {
        let mine: Vec<&Read<'_>> = read.iter().filter(|r| r.endpoint == e).collect();
        if let Some(h) = host(&mine, name_of(e)) {
            out.hosts.push(h);
        }
        if let Some(p) = process(&mine, name_of(e)) {
            out.processes.push(p);
        }
        out.gpus.extend(gpus(&mine, &name_of(e)));
    }
    out.pool = pool(read);
    out
}

fn rate(r: &Read<'_>) -> Option<f64> {
    r.figures.rate_per_s.filter(|x| x.is_finite() && *x >= 0.0)
}

fn mean(r: &Read<'_>) -> Option<f64> {
    r.figures.mean.filter(|x| x.is_finite())
}

fn label<'a>(r: &'a Read<'_>, name: &str) -> &'a str {
    r.labels.get(name).map_or("", String::as_str)
}

/// The sum of `f` over the series named `name`, `None` when none has it.
fn sum(read: &[&Read<'_>], name: &str, f: fn(&Read<'_>) -> Option<f64>) -> Option<f64> {
    read.iter()
        .filter(|r| r.name == name)
        .filter_map(|r| f(r))
        .reduce(|a, b| a + b)
}

fn host(read: &[&Read<'_>], endpoint: String) -> Option<Host> {
    // Per core: every mode's rate, and the idle and iowait part of it.
    let mut cores: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in read.iter().filter(|r| r.name == "node_cpu_seconds_total") {
        let Some(v) = rate(r) else { continue };
        let core = cores.entry(label(r, "cpu")).or_default();
        core.0 += v;
        if matches!(label(r, "mode"), "idle" | "iowait") {
            core.1 += v;
        }
    }
    let busy =
        |(all, idle): (f64, f64)| (all > 0.0).then(|| (1.0 - idle / all).clamp(0.0, 1.0) * 100.0);
    let (all, idle) = cores
        .values()
        .fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1));
    let total = sum(read, "node_memory_MemTotal_bytes", mean);
    let available = sum(read, "node_memory_MemAvailable_bytes", mean);
    let mut network: BTreeMap<&str, Interface> = BTreeMap::new();
    for r in read.iter().filter(|r| label(r, "device") != "lo") {
        let Some(v) = rate(r) else { continue };
        let (rx, tx) = match r.name.as_str() {
            "node_network_receive_bytes_total" => (v, 0.0),
            "node_network_transmit_bytes_total" => (0.0, v),
            _ => continue,
        };
        let i = network
            .entry(label(r, "device"))
            .or_insert_with(|| Interface {
                device: label(r, "device").to_string(),
                ..Interface::default()
            });
        i.rx_bytes_per_s += rx;
        i.tx_bytes_per_s += tx;
    }
    let h = Host {
        endpoint,
        cpu_busy_pct: busy((all, idle)),
        busiest_core_pct: cores.values().filter_map(|c| busy(*c)).reduce(f64::max),
        cores: (!cores.is_empty()).then(|| u32::try_from(cores.len()).unwrap_or(u32::MAX)),
        memory_used_pct: match (total, available) {
            (Some(t), Some(a)) if t > 0.0 => Some(((1.0 - a / t) * 100.0).clamp(0.0, 100.0)),
            _ => None,
        },
        memory_total_bytes: total,
        network: network.into_values().collect(),
        disk_busy_pct: read
            .iter()
            .filter(|r| r.name == "node_disk_io_time_seconds_total")
            .filter_map(|r| rate(r))
            .map(|v| (v * 100.0).min(100.0))
            .reduce(f64::max),
    };
    let seen = h.cpu_busy_pct.is_some()
        || h.memory_used_pct.is_some()
        || !h.network.is_empty()
        || h.disk_busy_pct.is_some();
    seen.then_some(h)
}

fn process(read: &[&Read<'_>], endpoint: String) -> Option<Process> {
    let cpu = sum(read, "process_cpu_seconds_total", rate).map(|v| v * 100.0);
    let rss = read
        .iter()
        .filter(|r| r.name == "process_resident_memory_bytes")
        .filter_map(|r| r.figures.max.or(r.figures.mean))
        .reduce(f64::max);
    (cpu.is_some() || rss.is_some()).then_some(Process {
        endpoint,
        cpu_pct: cpu,
        rss_bytes: rss,
    })
}

fn gpus(read: &[&Read<'_>], endpoint: &str) -> Vec<Gpu> {
    // Utilisation, memory used and free, power.
    type Dcgm = [Option<f64>; 4];
    let mut by_gpu: BTreeMap<&str, Dcgm> = BTreeMap::new();
    for r in read.iter().filter(|r| r.name.starts_with("DCGM_FI_")) {
        let Some(v) = mean(r) else { continue };
        let g = by_gpu.entry(label(r, "gpu")).or_default();
        let slot = match r.name.as_str() {
            "DCGM_FI_DEV_GPU_UTIL" => 0,
            "DCGM_FI_DEV_FB_USED" => 1,
            "DCGM_FI_DEV_FB_FREE" => 2,
            "DCGM_FI_DEV_POWER_USAGE" => 3,
            _ => continue,
        };
        g[slot] = Some(v);
    }
    by_gpu
        .into_iter()
        .map(|(gpu, [util, used, free, power])| Gpu {
            gpu: format!("{endpoint} gpu {gpu}"),
            util_pct: util,
            memory_used_pct: match (used, free) {
                (Some(u), Some(f)) if u + f > 0.0 => Some(u / (u + f) * 100.0),
                _ => None,
            },
            power_w: power,
        })
        .collect()
}

fn pool(read: &[Read<'_>]) -> Option<Pool> {
    let mut p = Pool::default();
    let add = |into: &mut Option<f64>, v: Option<f64>| {
        if let Some(v) = v.filter(|x| x.is_finite()) {
            *into = Some(into.unwrap_or(0.0) + v);
        }
    };
    for r in read {
        match super::server::role(&r.name) {
            Some("pool_in_use") => add(&mut p.in_use, r.figures.max.or(r.figures.mean)),
            Some("pool_idle") => add(&mut p.idle, r.figures.mean),
            Some("pool_waiting") => add(&mut p.waiting, r.figures.mean),
            Some("pool_size") => add(&mut p.size, r.figures.max.or(r.figures.mean)),
            _ => {}
        }
    }
    (p != Pool::default()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::server::Endpoint;

    fn series(endpoint: u32, key: &str, kind: &str, overall: Figures) -> ServerSeries {
        ServerSeries {
            series: key.into(),
            kind: kind.into(),
            endpoint,
            overall,
            windows: Vec::new(),
            stages: Vec::new(),
        }
    }

    fn counter(key: &str, r: f64) -> ServerSeries {
        series(
            0,
            key,
            "counter",
            Figures {
                rate_per_s: Some(r),
                ..Figures::default()
            },
        )
    }

    fn gauge(endpoint: u32, key: &str, mean: f64, max: f64) -> ServerSeries {
        series(
            endpoint,
            key,
            "gauge",
            Figures {
                mean: Some(mean),
                max: Some(max),
                ..Figures::default()
            },
        )
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            scrapes: 10,
            failures: 0,
            last_error: None,
            dropped_series: 0,
            cut_labels: 0,
            shards: Vec::new(),
        }
    }

    #[test]
    fn node_exporter_counters_read_as_people_read_them() {
        let m = ServerMetrics {
            endpoints: vec![endpoint("http://10.0.0.5:9100/metrics")],
            series: vec![
                // cpu0 fully busy (user 1 core-second per second), cpu1 a quarter.
                counter(r#"node_cpu_seconds_total{cpu="0",mode="user"}"#, 1.0),
                counter(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#, 0.0),
                counter(r#"node_cpu_seconds_total{cpu="1",mode="system"}"#, 0.25),
                counter(r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#, 0.5),
                counter(r#"node_cpu_seconds_total{cpu="1",mode="iowait"}"#, 0.25),
                gauge(0, "node_memory_MemTotal_bytes", 16e9, 16e9),
                gauge(0, "node_memory_MemAvailable_bytes", 4e9, 5e9),
                counter(r#"node_network_receive_bytes_total{device="eth0"}"#, 1e6),
                counter(r#"node_network_transmit_bytes_total{device="eth0"}"#, 2e5),
                counter(r#"node_network_receive_bytes_total{device="lo"}"#, 9e9),
                counter(r#"node_disk_io_time_seconds_total{device="sda"}"#, 0.3),
                counter(r#"node_disk_io_time_seconds_total{device="sdb"}"#, 0.1),
            ],
            resources: None,
        };
        let r = resources(&m).expect("resources");
        let h = &r.overall.hosts[0];
        assert_eq!(h.endpoint, "10.0.0.5:9100");
        // (1 + 0.25) busy of 2 core-seconds.
        assert!((h.cpu_busy_pct.expect("cpu") - 62.5).abs() < 1e-9, "{h:?}");
        assert_eq!(h.busiest_core_pct, Some(100.0));
        assert_eq!(h.cores, Some(2));
        assert!((h.memory_used_pct.expect("mem") - 75.0).abs() < 1e-9);
        assert_eq!(h.network.len(), 1, "loopback left out");
        assert_eq!(
            (h.network[0].rx_bytes_per_s, h.network[0].tx_bytes_per_s),
            (1e6, 2e5)
        );
        assert!((h.disk_busy_pct.expect("disk") - 30.0).abs() < 1e-9);
    }

    #[test]
    fn processes_gpus_and_pools_by_endpoint() {
        let m = ServerMetrics {
            endpoints: vec![
                endpoint("http://127.0.0.1:8000/metrics"),
                endpoint("http://127.0.0.1:8001/metrics"),
            ],
            series: vec![
                ServerSeries {
                    endpoint: 0,
                    ..counter("process_cpu_seconds_total", 1.5)
                },
                gauge(0, "process_resident_memory_bytes", 1e9, 2e9),
                ServerSeries {
                    endpoint: 1,
                    ..counter("process_cpu_seconds_total", 0.2)
                },
                gauge(1, r#"DCGM_FI_DEV_GPU_UTIL{gpu="0"}"#, 87.0, 99.0),
                gauge(1, r#"DCGM_FI_DEV_FB_USED{gpu="0"}"#, 60_000.0, 60_000.0),
                gauge(1, r#"DCGM_FI_DEV_FB_FREE{gpu="0"}"#, 20_000.0, 20_000.0),
                gauge(1, r#"DCGM_FI_DEV_POWER_USAGE{gpu="0"}"#, 310.0, 350.0),
                gauge(0, r#"hikaricp_connections_active{pool="db"}"#, 8.0, 10.0),
                gauge(0, r#"hikaricp_connections_idle{pool="db"}"#, 2.0, 5.0),
                gauge(0, r#"hikaricp_connections_pending{pool="db"}"#, 3.5, 9.0),
                gauge(0, r#"hikaricp_connections_max{pool="db"}"#, 10.0, 10.0),
            ],
            resources: None,
        };
        let u = resources(&m).expect("resources").overall;
        assert!(u.hosts.is_empty());
        assert_eq!(u.processes.len(), 2);
        assert_eq!(u.processes[0].endpoint, "127.0.0.1:8000");
        assert_eq!(
            (u.processes[0].cpu_pct, u.processes[0].rss_bytes),
            (Some(150.0), Some(2e9))
        );
        assert_eq!(u.processes[1].endpoint, "127.0.0.1:8001");
        let g = &u.gpus[0];
        assert_eq!(g.gpu, "127.0.0.1:8001 gpu 0");
        assert_eq!(
            (g.util_pct, g.memory_used_pct, g.power_w),
            (Some(87.0), Some(75.0), Some(310.0))
        );
        let p = u.pool.expect("pool");
        assert_eq!(
            (p.in_use, p.idle, p.waiting, p.size),
            (Some(10.0), Some(2.0), Some(3.5), Some(10.0))
        );
    }

    #[test]
    fn series_of_nothing_known_give_no_resources() {
        let m = ServerMetrics {
            endpoints: vec![endpoint("http://127.0.0.1:8000/metrics")],
            series: vec![gauge(0, "vllm:num_requests_running", 3.0, 4.0)],
            resources: None,
        };
        assert_eq!(resources(&m), None);
    }
}
