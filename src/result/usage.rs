//! The resource figures a result keeps (see [`super::resources`] for how
//! they are read from the scraped series): plain data.

use serde::{Deserialize, Serialize};

/// One host (a node_exporter endpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// The endpoint, `host:port`.
    pub endpoint: String,
    /// Every core's time not idle and not waiting for I/O, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy_pct: Option<f64>,
    /// The busiest core's, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_core_pct: Option<f64>,
    /// Cores seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Memory not available to new work (`1 − MemAvailable / MemTotal`), %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_pct: Option<f64>,
    /// MemTotal, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<f64>,
    /// Bytes per second by interface (loopback left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<Interface>,
    /// The busiest disk's time doing I/O, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_busy_pct: Option<f64>,
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// `eth0`.
    pub device: String,
    /// Received, bytes/s.
    pub rx_bytes_per_s: f64,
    /// Sent, bytes/s.
    pub tx_bytes_per_s: f64,
}

/// One endpoint's own process (`process_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// The endpoint, `host:port`.
    pub endpoint: String,
    /// CPU, % of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// Resident memory, bytes (the highest sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<f64>,
}

/// One GPU (DCGM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// The endpoint and the GPU's index: `host:port gpu 0`.
    pub gpu: String,
    /// Utilisation, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_pct: Option<f64>,
    /// Frame-buffer memory used, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_pct: Option<f64>,
    /// Power, W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
}

/// The database pool, summed over the pools scraped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Connections in use, the highest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<f64>,
    /// Idle connections, mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<f64>,
    /// Callers waiting for a connection, mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<f64>,
    /// Its size (maximum connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
}

/// Resources over one stretch of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Hosts, by endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    /// Processes, by endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Process>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Gpu>,
    /// The database pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
}

impl Usage {
    /// Nothing a resource could be read from.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.processes.is_empty()
            && self.gpus.is_empty()
            && self.pool.is_none()
    }
}

/// Resources over the run, each window and each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Over the measured run.
    pub overall: Usage,
    /// Per window, by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Usage>,
    /// Per stage, as the result's `stages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Usage>,
}
