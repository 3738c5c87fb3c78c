//! The integration tests, one crate so the library links once: every module
//! drives flora-gate in process or as the built binary, against servers of
//! its own on 127.0.0.1.

mod common;

mod architecture;
mod capacity;
mod cli;
mod diagnosis;
mod docs;
mod duet;
mod engine;
mod fakegh;
mod faults;
mod fuzz;
mod gate_properties;
mod github;
mod history;
mod html;
mod hypotheses;
mod install;
mod limits;
mod markdown;
mod nightly;
mod prom;
mod prometheus;
mod report;
mod resources;
mod results;
mod schema;
mod shapes;
mod shards;
mod streams;
mod tls;
mod traffic;
mod trust;
mod wire;
mod writers;
