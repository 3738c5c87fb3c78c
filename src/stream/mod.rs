//! What a streamed answer looks like, as plain data and pure parsing: the
//! Server-Sent Events framing ([`sse`]) and the reading of one event's JSON
//! ([`chunk`]: content, usage, end marker). The scenario configures it; the
//! engine applies it.

pub mod chunk;
pub mod sse;
mod walk;

pub use chunk::StreamSpec;

/// Largest response body read (a stream or a JSON document); more is a
/// protocol error, so an endless response cannot exhaust memory.
pub const MAX_BODY: usize = 64 << 20;
