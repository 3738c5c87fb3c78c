//! The resource panel against a real `prometheus-node-exporter` on loopback:
//! host CPU busy %, memory used % and the interfaces match what `/proc`
//! says over the same run, while a busy loop keeps one core busy.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{read_json, run_cli, spawn_mock, text};

/// The exporter on PATH (Debian's `prometheus-node-exporter`), or `None`
/// when it is not installed and not required.
pub fn component(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("FLORA_GATE_PROMETHEUS_REQUIRED").is_none(),
            "no {name} on PATH (Debian: `apt-get install {name}`)"
        );
        eprintln!("SKIPPED: no {name} on PATH; `.ci/run` installs it and requires this test");
    }
    found
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Wait until something listens on `port`.
pub fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {port} after 10 s");
}

/// A child process killed on drop.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `prometheus-node-exporter` on a free loopback port, listening.
pub fn start_node_exporter(bin: &std::path::Path) -> (Child, u16) {
    let port = free_port();
    let child = Child(
        std::process::Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node exporter starts"),
    );
    wait_listening(port);
    (child, port)
}

/// Busy and total jiffies of a `/proc/stat` cpu line (busy = not idle and
/// not iowait, as the panel counts).
fn jiffies(line: &str) -> (u64, u64) {
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is within user).
    let total: u64 = v.iter().take(8).sum();
    (total - v[3] - v[4], total)
}

/// Busy and total jiffies of all cores.
fn proc_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    jiffies(
        stat.lines()
            .find(|l| l.starts_with("cpu "))
            .expect("cpu line"),
    )
}

/// Busy and total jiffies of each core (`cpuN` lines).
fn proc_cores() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            (total - v[3] - v[4], total)
        })
        .collect()
}

/// `1 − MemAvailable / MemTotal`, %.
fn proc_memory_used_pct() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb = |key: &str| -> f64 {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("meminfo key")
    };
    (1.0 - kb("MemAvailable:") / kb("MemTotal:")) * 100.0
}

/// Bytes received and sent by interface (`/proc/net/dev`).
fn proc_net() -> std::collections::BTreeMap<String, [u64; 2]> {
    std::fs::read_to_string("/proc/net/dev")
        .expect("/proc/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (dev, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((dev.trim().to_string(), [*v.first()?, *v.get(8)?]))
        })
        .collect()
}

#[test]
fn node_exporter_gives_cpu_memory_and_network_as_proc_does() {
    let Some(exporter) = component("prometheus-node-exporter") else {
        return;
    };
    let (_exporter, port) = start_node_exporter(&exporter);
    let mock = spawn_mock(&[]);
    // One core kept busy for the whole run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spin = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (cpu0, mem0, net0, cores0) = (proc_cpu(), proc_memory_used_pct(), proc_net(), proc_cores());
    let t0 = std::time::Instant::now();
    let (o, out) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        2,
        &[
            "-c",
            "2",
            "-d",
            "8s",
            "--warmup",
            "0s",
            "--server-metrics",
            &url,
            "--server-metrics-interval",
            "500ms",
        ],
    );
    let (cpu1, mem1, net1, cores1) = (proc_cpu(), proc_memory_used_pct(), proc_net(), proc_cores());
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spin.join().expect("spin");
    assert!(o.status.success(), "{}", text(&o));
    let r = read_json(&out);
    let v = crate::schema::validator();
    let errors: Vec<String> = v
        .iter_errors(&r)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let host = &r["server_metrics"]["resources"]["overall"]["hosts"][0];
    assert!(
        host.is_object(),
        "no host resources: {}",
        r["server_metrics"]
    );
    let busy = host["cpu_busy_pct"].as_f64().expect("cpu busy");
    let expected = (cpu1.0 - cpu0.0) as f64 / (cpu1.1 - cpu0.1).max(1) as f64 * 100.0;
    let cores = host["cores"].as_u64().expect("cores");
    let proc_cores = std::fs::read_to_string("/proc/stat")
        .expect("/proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    assert_eq!(cores, proc_cores, "{host}");
    assert!(
        (busy - expected).abs() < 10.0,
        "CPU busy {busy:.1}% against /proc's {expected:.1}% over the run: {host}"
    );
    // The busiest core as /proc/stat counts each core over the run (the
    // busy loop moves between cores: no core need be all busy).
    let busiest = host["busiest_core_pct"].as_f64().expect("busiest core");
    let proc_busiest = cores0
        .iter()
        .zip(&cores1)
        .map(|(a, b)| (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64 * 100.0)
        .fold(0.0, f64::max);
    eprintln!("CPU busy {busy:.1}% (/proc {expected:.1}%), busiest core {busiest:.1}% (/proc {proc_busiest:.1}%), {cores} cores");
    assert!(
        (busiest - proc_busiest).abs() < 10.0 && busiest >= busy - 0.1,
        "busiest core {busiest:.1}% against /proc's {proc_busiest:.1}%: {host}"
    );
    let mem = host["memory_used_pct"].as_f64().expect("memory");
    let (lo, hi) = (mem0.min(mem1) - 3.0, mem0.max(mem1) + 3.0);
    assert!(
        mem > lo && mem < hi,
        "memory {mem:.1}% against /proc's {mem0:.1}…{mem1:.1}%"
    );
    assert!(
        host["memory_total_bytes"].as_f64().unwrap_or(0.0) > 0.0,
        "{host}"
    );
    // Every interface but loopback that /proc/net/dev lists.
    let dev = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    let mut want: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|d| d.trim().to_string())
        .filter(|d| d != "lo")
        .collect();
    want.sort();
    let mut got: Vec<String> = host["network"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["device"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    assert_eq!(got, want, "{host}");
    // Bytes per second as /proc/net/dev counts them over the run: within
    // 20% or 2 kB/s (the run's span and the measured window differ a little).
    for n in host["network"].as_array().expect("network") {
        let dev = n["device"].as_str().expect("device");
        let (Some(a), Some(b)) = (net0.get(dev), net1.get(dev)) else {
            continue;
        };
        for (k, field) in [(0, "rx_bytes_per_s"), (1, "tx_bytes_per_s")] {
            let proc = (b[k] - a[k]) as f64 / secs;
            let ours = n[field].as_f64().expect("rate");
            assert!(
                (ours - proc).abs() <= (0.2 * proc).max(2000.0),
                "{dev} {field}: {ours:.0} against /proc's {proc:.0}"
            );
        }
    }
    // The panel comes first in the report, before the raw series.
    let report = crate::common::report_md(&out);
    let panel = report.find("CPU busy").expect("the panel in the report");
    let series = report.find("| series |").expect("the series table");
    assert!(panel < series, "{report}");
}
