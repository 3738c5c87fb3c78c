//! The resource panel: host CPU, memory, network and disk, each endpoint's
//! process, GPUs and the database pool, as people read them, over the run
//! and per stage. Shown before the raw series in every report.

use serde::Serialize;

use super::short_number as short;
use crate::result::usage::{Resources, Usage};

/// One resource over the run and per stage.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceRow {
    /// What it is: `10.0.0.5:9100 CPU busy`.
    what: String,
    /// Over the run: `62% (busiest core 100%, 2 cores)`.
    run: String,
    /// Its headline per stage, `/`-separated.
    stages: String,
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| crate::stats::format::NONE.into(), |x| format!("{x:.0}%"))
}

fn bytes(v: f64) -> String {
    format!("{}B", short(v))
}

fn per_s(v: f64) -> String {
    format!("{}B/s", short(v))
}

/// One resource: its label, and how to read it (the run's figure, and the
/// headline a stage column shows) from a stretch's usage.
struct Line {
    what: String,
    full: Read,
    headline: Read,
}

/// A text read from one stretch's usage, if it has the resource.
type Read = Box<dyn Fn(&Usage) -> Option<String>>;

/// A host's lines: CPU, memory, each interface, the busiest disk.
fn host_lines(i: usize, h: &crate::result::usage::Host) -> Vec<Line> {
    let mut out = Vec::new();
    let host = move |u: &Usage| u.hosts.get(i).cloned();
    if h.cpu_busy_pct.is_some() {
        out.push(Line {
            what: format!("{} CPU busy", h.endpoint),
            full: Box::new(move |u| {
                let h = host(u)?;
                Some(format!(
                    "{} (busiest core {}, {} cores)",
                    pct(h.cpu_busy_pct),
                    pct(h.busiest_core_pct),
                    h.cores.unwrap_or(0)
                ))
            }),
            headline: Box::new(move |u| host(u).map(|h| pct(h.cpu_busy_pct))),
        });
    }
    if h.memory_used_pct.is_some() {
        out.push(Line {
            what: format!("{} memory used", h.endpoint),
            full: Box::new(move |u| {
                let h = host(u)?;
                Some(match h.memory_total_bytes {
                    Some(t) => format!("{} of {}", pct(h.memory_used_pct), bytes(t)),
                    None => pct(h.memory_used_pct),
                })
            }),
            headline: Box::new(move |u| host(u).map(|h| pct(h.memory_used_pct))),
        });
    }
    for (k, n) in h.network.iter().enumerate() {
        let nic = move |u: &Usage| host(u).and_then(|h| h.network.get(k).cloned());
        out.push(Line {
            what: format!("{} {} receive / send", h.endpoint, n.device),
            full: Box::new(move |u| {
                nic(u).map(|n| format!("{} / {}", per_s(n.rx_bytes_per_s), per_s(n.tx_bytes_per_s)))
            }),
            headline: Box::new(move |u| {
                nic(u).map(|n| format!("{}/{}", per_s(n.rx_bytes_per_s), per_s(n.tx_bytes_per_s)))
            }),
        });
    }
    if h.disk_busy_pct.is_some() {
        out.push(Line {
            what: format!("{} busiest disk busy", h.endpoint),
            full: Box::new(move |u| host(u).map(|h| pct(h.disk_busy_pct))),
            headline: Box::new(move |u| host(u).map(|h| pct(h.disk_busy_pct))),
        });
    }
    out
}

/// The lines of what `u` holds, in the panel's order.
fn lines(u: &Usage) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, h) in u.hosts.iter().enumerate() {
        out.extend(host_lines(i, h));
    }
    for (i, p) in u.processes.iter().enumerate() {
        let proc = move |u: &Usage| u.processes.get(i).cloned();
        out.push(Line {
            what: format!("{} process CPU / RSS", p.endpoint),
            full: Box::new(move |u| {
                let p = proc(u)?;
                Some(format!(
                    "{} of a core · {}",
                    pct(p.cpu_pct),
                    p.rss_bytes
                        .map_or_else(|| crate::stats::format::NONE.into(), bytes)
                ))
            }),
            headline: Box::new(move |u| proc(u).map(|p| pct(p.cpu_pct))),
        });
    }
    for (i, g) in u.gpus.iter().enumerate() {
        let gpu = move |u: &Usage| u.gpus.get(i).cloned();
        out.push(Line {
            what: format!("{} utilisation / memory / power", g.gpu),
            full: Box::new(move |u| {
                let g = gpu(u)?;
                Some(format!(
                    "{} · {} · {}",
                    pct(g.util_pct),
                    pct(g.memory_used_pct),
                    g.power_w.map_or_else(
                        || crate::stats::format::NONE.into(),
                        |w| format!("{w:.0} W")
                    )
                ))
            }),
            headline: Box::new(move |u| gpu(u).map(|g| pct(g.util_pct))),
        });
    }
    if u.pool.is_some() {
        let n = |v: Option<f64>| v.map_or_else(|| crate::stats::format::NONE.into(), short);
        out.push(Line {
            what: "DB pool in use / idle / waiting / size".into(),
            full: Box::new(move |u| {
                let p = u.pool.clone()?;
                Some(format!(
                    "{} / {} / {} / {}",
                    n(p.in_use),
                    n(p.idle),
                    n(p.waiting),
                    n(p.size)
                ))
            }),
            headline: Box::new(move |u| {
                let p = u.pool.clone()?;
                Some(format!("{}/{}", n(p.in_use), n(p.waiting)))
            }),
        });
    }
    out
}

/// The panel's rows; names from the server are inert Markdown.
pub fn rows(r: &Resources) -> Vec<ResourceRow> {
    lines(&r.overall)
        .into_iter()
        .map(|l| ResourceRow {
            what: super::md_cell(&l.what),
            run: (l.full)(&r.overall).unwrap_or_else(|| crate::stats::format::NONE.into()),
            stages: r
                .stages
                .iter()
                .map(|u| (l.headline)(u).unwrap_or_else(|| crate::stats::format::NONE.into()))
                .collect::<Vec<_>>()
                .join(" / "),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::usage::{Host, Interface, Pool, Process};

    #[test]
    fn the_panel_reads_as_people_read_resources() {
        let u = Usage {
            hosts: vec![Host {
                endpoint: "10.0.0.5:9100".into(),
                cpu_busy_pct: Some(62.5),
                busiest_core_pct: Some(100.0),
                cores: Some(2),
                memory_used_pct: Some(75.0),
                memory_total_bytes: Some(16e9),
                network: vec![Interface {
                    device: "eth0".into(),
                    rx_bytes_per_s: 1e6,
                    tx_bytes_per_s: 2e5,
                }],
                disk_busy_pct: None,
            }],
            processes: vec![Process {
                endpoint: "127.0.0.1:8000".into(),
                cpu_pct: Some(150.0),
                rss_bytes: Some(2e9),
            }],
            gpus: Vec::new(),
            pool: Some(Pool {
                in_use: Some(10.0),
                idle: Some(0.0),
                waiting: Some(3.5),
                size: Some(10.0),
            }),
        };
        let mut later = u.clone();
        later.hosts[0].cpu_busy_pct = Some(90.0);
        let r = Resources {
            overall: u.clone(),
            windows: Vec::new(),
            stages: vec![u, later],
        };
        let rows = rows(&r);
        let text: Vec<String> = rows
            .iter()
            .map(|r| format!("{} | {} | {}", r.what, r.run, r.stages))
            .collect();
        assert_eq!(
            text,
            [
                "10.0.0.5:9100 CPU busy | 62% (busiest core 100%, 2 cores) | 62% / 90%",
                "10.0.0.5:9100 memory used | 75% of 16GB | 75% / 75%",
                "10.0.0.5:9100 eth0 receive / send | 1MB/s / 200kB/s | 1MB/s/200kB/s / 1MB/s/200kB/s",
                "127.0.0.1:8000 process CPU / RSS | 150% of a core · 2GB | 150% / 150%",
                "DB pool in use / idle / waiting / size | 10 / 0 / 3.5 / 10 | 10/3.5 / 10/3.5",
            ]
        );
    }
}
