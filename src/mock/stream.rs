//! One streamed answer as a sequence of SSE events on an absolute schedule.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{App, Fault, RequestCtx};

enum Phase {
    Role,
    Token(u32),
    Finish,
    Usage,
    Done,
    End,
}

/// The wire format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// OpenAI chat-completion chunks, `data: [DONE]` at the end.
    OpenAi,
    /// Anthropic Messages events: named `event:` lines, `message_stop` at
    /// the end, `event: error` for the server's error.
    Anthropic,
}

pub(super) struct ChunkStream {
    app: Arc<App>,
    dialect: Dialect,
    ctx: RequestCtx,
    tokens: u32,
    model: String,
    phase: Phase,
    next_at: Instant,
    created: i64,
    _permit: Option<OwnedSemaphorePermit>,
    /// Counts this stream as being generated (after its queue wait).
    _streaming: super::config::Held,
    /// Counts this stream for its bearer token.
    _token_stream: super::config::TokenStream,
    /// Preempted already (each stream at most once).
    preempted: bool,
}

impl ChunkStream {
    pub(super) fn new(
        app: Arc<App>,
        mut ctx: RequestCtx,
        tokens: u32,
        model: String,
        permit: Option<OwnedSemaphorePermit>,
        dialect: Dialect,
    ) -> Self {
        let ttft = app.ttft(&mut ctx.rng) + ctx.prefill;
        let app_stats = app.stats.clone();
        let ctx_owner = ctx.owner;
        // Generation starts once a slot is free: queueing adds to the TTFT.
        Self {
            next_at: Instant::now() + ttft,
            app,
            dialect,
            ctx,
            tokens,
            model,
            phase: Phase::Role,
            created: chrono::Utc::now().timestamp(),
            _permit: permit,
            _streaming: super::config::Held::new(&app_stats, |s| &s.streaming),
            _token_stream: super::config::TokenStream::new(&app_stats, ctx_owner),
            preempted: false,
        }
    }

    /// One Anthropic event: `event: NAME` and its data.
    fn named(name: &str, data: &str) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    /// The opening of the answer: a role-only chunk, or Anthropic's
    /// `message_start` and `content_block_start`.
    fn opening(&self) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => self.chunk("\"role\":\"assistant\",\"content\":\"\"", None),
            Dialect::Anthropic => {
                let mut s = Self::named(
                    "message_start",
                    &format!(
                        "{{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_{}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{}\",\"content\":[],\"usage\":{{\"input_tokens\":{},\"output_tokens\":1}}}}}}",
                        self.ctx.id,
                        self.model,
                        self.ctx.prompt_tokens()
                    ),
                );
                s.push_str(&Self::named(
                    "content_block_start",
                    "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
                ));
                Bytes::from(s)
            }
        }
    }

    /// One token's event; `tok` is a JSON string.
    fn token(&self, tok: &str) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => self.chunk(&format!("\"content\":{tok}"), None),
            Dialect::Anthropic => Bytes::from(Self::named(
                "content_block_delta",
                &format!("{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{tok}}}}}"),
            )),
        }
    }

    /// The server's error inside the stream.
    fn stream_error(&self) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => Bytes::from_static(
                b"data: {\"error\": {\"message\": \"The server had an error while processing your request\", \"type\": \"server_error\", \"code\": 500}}\n\n",
            ),
            Dialect::Anthropic => Bytes::from(Self::named(
                "error",
                "{\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}",
            )),
        }
    }

    fn chunk(&self, delta: &str, finish: Option<&str>) -> Bytes {
        let mut s = String::with_capacity(192);
        let _ = write!(
            s,
            "data: {{\"id\":\"chatcmpl-{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":\"{}\",\"choices\":[{{\"index\":0,\"delta\":{{{}}},\"finish_reason\":{}}}]}}\n\n",
            self.ctx.id,
            self.created,
            self.model,
            delta,
            finish.map_or("null".to_string(), |f| format!("\"{f}\"")),
        );
        Bytes::from(s)
    }

    /// The `hang` and `stall` faults: say nothing for the configured time
    /// (or until the server stops), then end the stream without `[DONE]`.
    async fn go_silent(&mut self) {
        let wake = Instant::now() + self.app.cfg.hang;
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = self.app.shutdown.cancelled() => {}
        }
        self.phase = Phase::End;
    }

    /// Content event `i`, after waiting for its time, with the faults that
    /// strike mid-stream; `Emit::Now` for what ends the stream at once.
    async fn token_event(&mut self, i: u32) -> Emit {
        let stats = &self.app.stats;
        if i == 0 && self.ctx.fault == Some(Fault::Hang) {
            self.go_silent().await;
            return Emit::Now(None);
        }
        tokio::time::sleep_until(self.next_at).await;
        let itl = self.app.itl(&mut self.ctx.rng);
        self.next_at += itl;
        // More streams than the KV cache holds: this one is evicted
        // once, mid-stream, and waits while its cache is recomputed.
        if let Some(slots) = self.app.cfg.kv_slots {
            let over = stats.streaming.load(Ordering::Relaxed) > slots as u64;
            if over && !self.preempted && i > 0 {
                self.preempted = true;
                stats.preemptions.fetch_add(1, Ordering::Relaxed);
                self.next_at += self.app.cfg.preempt;
            }
        }
        let half = self.tokens / 2;
        if i == half && i > 0 {
            match self.ctx.fault {
                Some(Fault::Disconnect) => {
                    self.phase = Phase::End;
                    return Emit::Now(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "injected disconnect",
                    ))));
                }
                Some(Fault::Stall) => {
                    self.go_silent().await;
                    return Emit::Now(None);
                }
                Some(Fault::StreamError) => {
                    self.phase = Phase::End;
                    stats.sse_events.fetch_add(1, Ordering::Relaxed);
                    return Emit::Now(Some(Ok(self.stream_error())));
                }
                Some(Fault::Malformed | Fault::BadJson) => {
                    self.phase = Phase::Token(i + 1);
                    stats.sse_events.fetch_add(1, Ordering::Relaxed);
                    return Emit::Now(Some(Ok(Bytes::from_static(
                        b"data: {\"choices\":[{\"delta\":{\"content\":\"\xe6\x96\n\n",
                    ))));
                }
                _ => {}
            }
        }
        if i == 0 {
            let us = u64::try_from(self.ctx.t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.record_ttft(us, self.ctx.request_id.as_deref());
        }
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        self.phase = if i + 1 >= self.tokens && self.ctx.fault != Some(Fault::Endless) {
            Phase::Finish
        } else {
            Phase::Token(i.saturating_add(1))
        };
        let tok = self
            .app
            .prose
            .token_json(self.ctx.id as usize * 7 + i as usize);
        let event = self.token(tok);
        Emit::Event(if self.app.cfg.event_ids {
            // Content events are numbered 1, 2, … for `Last-Event-ID`.
            let mut b = format!("id: {}\n", i + 1).into_bytes();
            b.extend_from_slice(&event);
            Bytes::from(b)
        } else {
            event
        })
    }

    /// The end of the content: OpenAI's finish chunk, or Anthropic's block
    /// stop and message delta with the usage.
    fn finish_event(&mut self) -> Bytes {
        if self.dialect == Dialect::Anthropic {
            self.phase = if self.app.cfg.no_done {
                Phase::End
            } else {
                Phase::Done
            };
            let mut s = Self::named(
                "content_block_stop",
                "{\"type\":\"content_block_stop\",\"index\":0}",
            );
            s.push_str(&Self::named(
            "message_delta",
            &format!(
                "{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}",
                self.tokens
            ),
        ));
            Bytes::from(s)
        } else {
            self.phase = if self.app.cfg.no_usage {
                if self.app.cfg.no_done {
                    Phase::End
                } else {
                    Phase::Done
                }
            } else {
                Phase::Usage
            };
            self.chunk("", Some("stop"))
        }
    }

    /// OpenAI's usage chunk (`stream_options.include_usage`).
    fn usage_event(&mut self) -> Bytes {
        self.phase = if self.app.cfg.no_done {
            Phase::End
        } else {
            Phase::Done
        };
        let s = format!(
            "data: {{\"id\":\"chatcmpl-{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":\"{}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
            self.ctx.id,
            self.created,
            self.model,
            self.ctx.prompt_tokens(),
            self.tokens,
            self.tokens + self.ctx.prompt_tokens()
        );
        Bytes::from(s)
    }

    /// The next event, after waiting for its time.
    async fn next_event(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let event = match self.phase {
            Phase::Role => {
                // A resumed stream (`Last-Event-ID: k`) goes on at token k.
                let first = self.ctx.resume_from.min(self.tokens);
                self.phase = if first >= self.tokens {
                    Phase::Finish
                } else {
                    Phase::Token(first)
                };
                self.opening()
            }
            Phase::Token(i) => match self.token_event(i).await {
                Emit::Event(b) => b,
                Emit::Now(r) => return r,
            },
            Phase::Finish => self.finish_event(),
            Phase::Usage => self.usage_event(),
            Phase::Done => {
                self.phase = Phase::End;
                match self.dialect {
                    Dialect::OpenAi => Bytes::from_static(b"data: [DONE]\n\n"),
                    Dialect::Anthropic => Bytes::from_static(
                        b"event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n",
                    ),
                }
            }
            Phase::End => return None,
        };
        self.app.stats.sse_events.fetch_add(1, Ordering::Relaxed);
        Some(Ok(event))
    }

    /// Tokens left to generate when the client went away mid-stream.
    fn left(&self) -> Option<u32> {
        match self.phase {
            Phase::Token(i) if self.ctx.fault != Some(Fault::Endless) => {
                Some(self.tokens.saturating_sub(i)).filter(|n| *n > 0)
            }
            _ => None,
        }
    }

    pub(super) fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(
            self,
            |mut s| async move { s.next_event().await.map(|e| (e, s)) },
        )
    }
}
/// What a content event gives: an event to count and send, or what the
/// stream returns at once (an injected fault, the end).
enum Emit {
    Event(Bytes),
    Now(Option<Result<Bytes, std::io::Error>>),
}

impl Drop for ChunkStream {
    /// The client left mid-stream: count it and stop generating, or, with
    /// `--ignore-disconnect`, keep generating the rest for nobody (the
    /// costly bug the interrupt scenarios look for).
    fn drop(&mut self) {
        let Some(left) = self.left() else { return };
        let stats = self.app.stats.clone();
        stats.disconnects.fetch_add(1, Ordering::Relaxed);
        if !self.app.cfg.ignore_disconnect {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let app = self.app.clone();
        let ghost = super::config::Held::new(&stats, |s| &s.streaming);
        let mut next = self.next_at;
        rt.spawn(async move {
            let _ghost = ghost;
            let mut rng =
                <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(u64::from(left));
            for _ in 0..left {
                tokio::time::sleep_until(next).await;
                next += app.itl(&mut rng);
                app.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}
