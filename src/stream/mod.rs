//! What a streamed answer looks like, as plain data and pure parsing: the
//! Server-Sent Events framing ([`sse`]), the reading of one event
//! ([`chunk`]: content, usage, end marker, the server's error) and of a
//! whole stream ([`reader`]: what it said and how it ended). The scenario
//! configures it; the engine feeds it the bytes and keeps the clocks.

pub mod chunk;
pub mod reader;
pub mod sse;
mod walk;

pub use chunk::StreamSpec;

/// Largest response body read (a stream or a JSON document); more is a
/// protocol error, so an endless response cannot exhaust memory.
pub const MAX_BODY: usize = 64 << 20;
