//! Where finished requests and iterations go while a run lasts: fixed-size
//! binary records appended to an unlinked temporary file, so a four-hour
//! soak holds no per-request state in memory. The run reads them back once
//! it is over.
//!
//! The file is anonymous (`O_TMPFILE` where the system has it, else created
//! exclusively with mode 0600 and unlinked at once): no other process can
//! open it by name and nothing is left behind, whatever way the process
//! ends. A failed write (the disk full) stops the recording; what reached
//! the disk is still read back, and the records lost are counted.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sample::{ErrorClass, IterationSample, Sample};

const SAMPLE_BYTES: usize = 120;
const ITERATION_BYTES: usize = 40;
const NONE: u64 = u64::MAX;

/// An append-only record file.
#[derive(Debug)]
struct Records {
    file: Mutex<BufWriter<File>>,
    /// Records handed to the file without an error.
    count: AtomicU64,
    /// Records offered, including those after a failure.
    offered: AtomicU64,
    /// Set with `failed`: a record is never written after a failure, and
    /// `push` checks this flag, not the mutex, on every request.
    broken: AtomicBool,
    failed: Mutex<Option<String>>,
}

impl Records {
    fn create() -> std::io::Result<Self> {
        let file = tempfile::tempfile()?;
        Ok(Records {
            file: Mutex::new(BufWriter::with_capacity(64 * 1024, file)),
            count: AtomicU64::new(0),
            offered: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            failed: Mutex::new(None),
        })
    }

    fn push(&self, bytes: &[u8]) {
        self.offered.fetch_add(1, Ordering::Relaxed);
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut f) = self.file.lock() else {
            return;
        };
        match f.write_all(bytes) {
            Ok(()) => {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Keep the first failed write; no record is written after it.
    fn fail(&self, e: &std::io::Error) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.get_or_insert_with(|| e.to_string());
        }
        self.broken.store(true, Ordering::Relaxed);
    }

    /// How many records can be read back: all of them, or after a failed
    /// write, the whole ones on disk (a part-written buffer cannot be
    /// trusted beyond its last whole record).
    fn readable(&self, w: &mut BufWriter<File>, size: usize) -> Result<u64, String> {
        let count = self.count.load(Ordering::Relaxed);
        if self.failure().is_none() {
            match w.flush() {
                Ok(()) => return Ok(count),
                Err(e) => self.fail(&e),
            }
        }
        let len = w.get_ref().metadata().map_err(|e| e.to_string())?.len();
        Ok(count.min(len / size as u64))
    }

    /// Records offered that cannot be read back.
    fn lost(&self, size: usize) -> u64 {
        let offered = self.offered.load(Ordering::Relaxed);
        let Ok(mut w) = self.file.lock() else {
            return offered;
        };
        offered.saturating_sub(self.readable(&mut w, size).unwrap_or(0))
    }

    /// A write that failed (the disk full, say), if one did.
    fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Every record in the order written, one at a time. After a failed
    /// write, the whole records that reached the file.
    fn for_each(&self, size: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        let mut w = self.file.lock().map_err(|e| e.to_string())?;
        let n = self.readable(&mut w, size)?;
        let file = w.get_mut();
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut r = BufReader::with_capacity(256 * 1024, &mut *file);
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            f(&buf);
        }
        drop(r);
        file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The run's requests and iterations on disk.
#[derive(Debug)]
pub struct Spill {
    samples: Records,
    iterations: Records,
}

impl Spill {
    /// Two new record files in the temporary directory.
    pub fn create() -> std::io::Result<Self> {
        Ok(Spill {
            samples: Records::create()?,
            iterations: Records::create()?,
        })
    }

    /// Record a finished request.
    pub fn sample(&self, s: &Sample) {
        self.samples.push(&encode_sample(s));
    }

    /// Record a finished iteration.
    pub fn iteration(&self, it: &IterationSample) {
        self.iterations.push(&encode_iteration(it));
    }

    /// A write that failed, if one did: the records are then incomplete.
    pub fn failure(&self) -> Option<String> {
        self.samples.failure().or_else(|| self.iterations.failure())
    }

    /// Requests and iterations finished but not readable (after a failure).
    pub fn lost(&self) -> (u64, u64) {
        (
            self.samples.lost(SAMPLE_BYTES),
            self.iterations.lost(ITERATION_BYTES),
        )
    }

    /// Requests recorded.
    pub fn len(&self) -> u64 {
        self.samples.count.load(Ordering::Relaxed)
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The requests and iterations of a run (or of a duet side's slots, each
/// shifted onto the duet's clock), read from their record files pass by
/// pass: a summary never holds them all in memory.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    parts: Vec<(Arc<Spill>, Duration)>,
}

impl Samples {
    /// The records of one run.
    pub fn new(spill: Arc<Spill>) -> Self {
        Samples {
            parts: vec![(spill, Duration::ZERO)],
        }
    }

    /// The same records, `offset` later.
    pub fn shifted(mut self, offset: Duration) -> Self {
        for (_, off) in &mut self.parts {
            *off += offset;
        }
        self
    }

    /// Add another run's records.
    pub fn extend(&mut self, other: Samples) {
        self.parts.extend(other.parts);
    }

    /// Requests recorded.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|(s, _)| s.len()).sum()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A write that failed in any part, if one did.
    pub fn failure(&self) -> Option<String> {
        self.parts.iter().find_map(|(s, _)| s.failure())
    }

    /// Every request, in the order they ended.
    pub fn for_each(&self, mut f: impl FnMut(&Sample)) -> Result<(), String> {
        for (spill, off) in &self.parts {
            spill.samples.for_each(SAMPLE_BYTES, &mut |b| {
                let mut s = decode_sample(b);
                s.start += *off;
                f(&s);
            })?;
        }
        Ok(())
    }

    /// Every iteration, in the order they ended.
    pub fn for_each_iteration(&self, mut f: impl FnMut(&IterationSample)) -> Result<(), String> {
        for (spill, off) in &self.parts {
            spill.iterations.for_each(ITERATION_BYTES, &mut |b| {
                let mut it = decode_iteration(b);
                it.start += *off;
                f(&it);
            })?;
        }
        Ok(())
    }

    /// Every request in memory, sorted by start (for tests and small runs).
    pub fn to_vec(&self) -> Vec<Sample> {
        let mut v = Vec::with_capacity(self.len() as usize);
        let _ = self.for_each(|s| v.push(s.clone()));
        v.sort_by_key(|s| s.start);
        v
    }

    /// Every iteration in memory, sorted by start (for tests and small runs).
    pub fn iterations(&self) -> Vec<IterationSample> {
        let mut v = Vec::new();
        let _ = self.for_each_iteration(|s| v.push(s.clone()));
        v.sort_by_key(|s| s.start);
        v
    }
}

/// The first line of a record file written by [`Samples::export`].
const MAGIC: &[u8] = b"flora-gate records 3\n";

impl Samples {
    /// Write every request and iteration to `w`: the record file of a
    /// shard, which `merge` reads back with [`import`].
    pub fn export(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let failed = |e: String| std::io::Error::other(e);
        let mut iterations = 0u64;
        self.for_each_iteration(|_| iterations += 1)
            .map_err(failed)?;
        w.write_all(MAGIC)?;
        w.write_all(&self.len().to_le_bytes())?;
        w.write_all(&iterations.to_le_bytes())?;
        let mut err = None;
        self.for_each(|s| {
            if err.is_none() {
                err = w.write_all(&encode_sample(s)).err();
            }
        })
        .map_err(failed)?;
        self.for_each_iteration(|it| {
            if err.is_none() {
                err = w.write_all(&encode_iteration(it)).err();
            }
        })
        .map_err(failed)?;
        err.map_or(Ok(()), Err)?;
        w.flush()
    }
}

/// One record file being read.
struct Source<R> {
    r: R,
    samples: u64,
    iterations: u64,
    next: Option<Sample>,
    owner: Option<Owner>,
}

impl<R: Read> Source<R> {
    fn open(mut r: R) -> Result<Self, String> {
        let mut magic = vec![0u8; MAGIC.len()];
        r.read_exact(&mut magic)
            .map_err(|_| "too short to be a record file".to_string())?;
        if magic != MAGIC {
            if magic.starts_with(b"flora-gate records ") {
                return Err(
                    "a record file of another flora-gate version (rerun the shard with this one)"
                        .into(),
                );
            }
            return Err("not a flora-gate record file".into());
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| e.to_string())?;
        let samples = u64::from_le_bytes(n);
        r.read_exact(&mut n).map_err(|e| e.to_string())?;
        let iterations = u64::from_le_bytes(n);
        let mut src = Source {
            r,
            samples,
            iterations,
            next: None,
            owner: None,
        };
        src.advance()?;
        Ok(src)
    }

    fn advance(&mut self) -> Result<(), String> {
        self.next = None;
        if self.samples > 0 {
            let mut b = [0u8; SAMPLE_BYTES];
            self.r
                .read_exact(&mut b)
                .map_err(|_| "it ends before its last request".to_string())?;
            self.samples -= 1;
            self.next = Some(decode_sample(&b));
        }
        self.check()
    }

    /// The next record is believable, and its user is this shard's.
    fn check(&self) -> Result<(), String> {
        let (Some(s), Some(o)) = (&self.next, &self.owner) else {
            return Ok(());
        };
        if o.count > 0 && s.vu % o.count != o.index {
            return Err(format!(
                "a request of user {} is in it, and shard {} of {} runs only users u with u % {} = {}",
                s.vu, o.index, o.count, o.count, o.index
            ));
        }
        if usize::from(s.step) >= o.steps {
            return Err(format!(
                "a request of step {}, and the scenario has {} steps",
                s.step, o.steps
            ));
        }
        let bytes = s.chunks as usize * 1024;
        if s.usage_tokens
            .is_some_and(|n| !super::request::plausible_usage(n, bytes))
        {
            return Err(format!(
                "a request with {} output tokens over {} content events: not believable",
                s.usage_tokens.unwrap_or(0),
                s.chunks
            ));
        }
        Ok(())
    }
}

/// Whose records a file must hold: shard `index` of `count` of a scenario
/// with `steps` steps.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    /// The shard.
    pub index: u32,
    /// Shards in the plan.
    pub count: u32,
    /// Steps in the scenario.
    pub steps: usize,
}

/// When a request ended (the order records are merged in).
fn ended(s: &Sample) -> Duration {
    s.start + s.e2e.unwrap_or_default()
}

/// Read the record files of several shards, all timed from the same
/// agreed start, into one new record file: requests in the order they
/// ended across shards, then iterations. `Err` names the file (by its
/// index) and what is wrong.
pub fn import(files: Vec<impl Read>, owners: &[Owner]) -> Result<Samples, (usize, String)> {
    let spill = Spill::create().map_err(|e| (0, format!("cannot create a record file: {e}")))?;
    let mut sources = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let mut src = Source::open(f).map_err(|e| (i, e))?;
        src.owner = owners.get(i).copied();
        src.check().map_err(|e| (i, e))?;
        sources.push(src);
    }
    // A k-way merge: each shard's records are in the order its requests ended.
    loop {
        let first = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.as_ref().map(|n| (i, ended(n))))
            .min_by_key(|(_, t)| *t);
        let Some((i, _)) = first else { break };
        if let Some(s) = sources[i].next.take() {
            spill.sample(&s);
        }
        sources[i].advance().map_err(|e| (i, e))?;
    }
    for (i, src) in sources.iter_mut().enumerate() {
        let mut b = [0u8; ITERATION_BYTES];
        for _ in 0..src.iterations {
            src.r
                .read_exact(&mut b)
                .map_err(|_| (i, "it ends before its last iteration".to_string()))?;
            spill.iteration(&decode_iteration(&b));
        }
    }
    if let Some(e) = spill.failure() {
        return Err((0, format!("cannot write the merged records: {e}")));
    }
    Ok(Samples::new(Arc::new(spill)))
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(NONE - 1)
}

fn opt_us(d: Option<Duration>) -> u64 {
    d.map_or(NONE, us)
}

fn dur(v: u64) -> Option<Duration> {
    (v != NONE).then(|| Duration::from_micros(v))
}

fn error_code(e: Option<ErrorClass>) -> u16 {
    e.map_or(0, |c| c.code())
}

fn error_class(c: u16) -> Option<ErrorClass> {
    ErrorClass::from_code(c)
}

fn encode_sample(s: &Sample) -> [u8; SAMPLE_BYTES] {
    let mut b = [0u8; SAMPLE_BYTES];
    let words = [
        us(s.start),
        opt_us(s.ttfb),
        opt_us(s.first_event),
        opt_us(s.ttft),
        opt_us(s.e2e),
        us(s.stream_end),
        s.usage_tokens.unwrap_or(NONE),
        s.iteration,
    ];
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    b[64..68].copy_from_slice(&s.vu.to_le_bytes());
    b[68..72].copy_from_slice(&s.chunks.to_le_bytes());
    b[72..74].copy_from_slice(&s.status.unwrap_or(0).to_le_bytes());
    b[74..76].copy_from_slice(&s.step.to_le_bytes());
    b[76..78].copy_from_slice(&error_code(s.error).to_le_bytes());
    b[78] = u8::from(s.warmup);
    b[79] = u8::from(s.cancelled) | (u8::from(s.resume.is_some()) << 1);
    b[92..96].copy_from_slice(&s.prompt_tokens.unwrap_or(u32::MAX).to_le_bytes());
    if let Some(r) = s.resume {
        let ttft = r.ttft.map_or(u32::MAX, |t| {
            u32::try_from(t.as_micros()).unwrap_or(u32::MAX - 1)
        });
        b[84..88].copy_from_slice(&ttft.to_le_bytes());
        b[88..90].copy_from_slice(
            &u16::try_from(r.duplicates)
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        b[90..92].copy_from_slice(&u16::try_from(r.lost).unwrap_or(u16::MAX).to_le_bytes());
    }
    b[80..84].copy_from_slice(&s.sent_chars.to_le_bytes());
    b[96..100].copy_from_slice(&s.asked.prompt_chars.to_le_bytes());
    b[100..104].copy_from_slice(&s.asked.max_tokens.to_le_bytes());
    b[104] = s.asked.prefix.code();
    b[105] = s.asked.book;
    b[106..110].copy_from_slice(&s.asked.prefix_chars.to_le_bytes());
    b[112..120].copy_from_slice(&s.asked.prefix_key.to_le_bytes());
    b
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn decode_sample(b: &[u8]) -> Sample {
    Sample {
        start: Duration::from_micros(word(b, 0)),
        ttfb: dur(word(b, 1)),
        first_event: dur(word(b, 2)),
        ttft: dur(word(b, 3)),
        e2e: dur(word(b, 4)),
        stream_end: Duration::from_micros(word(b, 5)),
        usage_tokens: (word(b, 6) != NONE).then(|| word(b, 6)),
        iteration: word(b, 7),
        vu: u32_at(b, 64),
        chunks: u32_at(b, 68),
        status: Some(u16_at(b, 72)).filter(|s| *s != 0),
        step: u16_at(b, 74),
        error: error_class(u16_at(b, 76)),
        warmup: b[78] != 0,
        sent_chars: u32_at(b, 80),
        cancelled: b[79] & 1 != 0,
        prompt_tokens: Some(u32_at(b, 92)).filter(|n| *n != u32::MAX),
        asked: super::sample::Asked {
            prompt_chars: u32_at(b, 96),
            max_tokens: u32_at(b, 100),
            prefix: super::sample::PrefixUse::from_code(b[104]),
            book: b[105],
            prefix_chars: u32_at(b, 106),
            prefix_key: word(b, 14),
        },
        resume: (b[79] & 2 != 0).then(|| super::sample::Resume {
            ttft: Some(u32_at(b, 84))
                .filter(|t| *t != u32::MAX)
                .map(|t| Duration::from_micros(u64::from(t))),
            duplicates: u32::from(u16_at(b, 88)),
            lost: u32::from(u16_at(b, 90)),
        }),
    }
}

fn encode_iteration(it: &IterationSample) -> [u8; ITERATION_BYTES] {
    let mut b = [0u8; ITERATION_BYTES];
    for (i, w) in [us(it.start), us(it.duration), it.iteration]
        .iter()
        .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    b[24..28].copy_from_slice(&it.vu.to_le_bytes());
    b[28..30].copy_from_slice(&it.workflow.to_le_bytes());
    b[30] = u8::from(it.ok);
    b[31] = u8::from(it.warmup);
    b
}

fn decode_iteration(b: &[u8]) -> IterationSample {
    IterationSample {
        start: Duration::from_micros(word(b, 0)),
        duration: Duration::from_micros(word(b, 1)),
        iteration: word(b, 2),
        vu: u32_at(b, 24),
        workflow: u16_at(b, 28),
        ok: b[30] != 0,
        warmup: b[31] != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sample::TimeoutPhase;

    #[test]
    fn records_read_back_as_written_sorted_by_start() {
        let spill = Spill::create().expect("present");
        let classes = [
            None,
            Some(ErrorClass::Status(503)),
            Some(ErrorClass::Timeout(TimeoutPhase::Idle)),
            Some(ErrorClass::Abandoned),
        ];
        let mut written = Vec::new();
        for (i, error) in classes.into_iter().enumerate().rev() {
            let s = Sample {
                step: i as u16,
                vu: 70_000 + i as u32,
                iteration: 1 << 40,
                start: Duration::from_micros(1_000 * i as u64 + 7),
                ttfb: Some(Duration::from_micros(5)),
                first_event: (i % 2 == 0).then(|| Duration::from_micros(6)),
                ttft: Some(Duration::from_secs(3 * 24 * 3600)),
                e2e: None,
                stream_end: Duration::from_millis(9),
                usage_tokens: (i == 1).then_some(12),
                chunks: 11,
                sent_chars: 4_000_000_000 + i as u32,
                cancelled: i == 2,
                prompt_tokens: (i == 1).then_some(3_000_000_000),
                resume: (i == 2).then_some(crate::engine::sample::Resume {
                    ttft: Some(Duration::from_micros(1234)),
                    duplicates: 3,
                    lost: 0,
                }),
                status: (i != 3).then_some(200),
                error,
                warmup: i == 2,
                asked: crate::engine::sample::Asked {
                    prompt_chars: 3_000_000 + i as u32,
                    max_tokens: 4_000_000_000 - i as u32,
                    prefix: crate::engine::sample::PrefixUse::from_code(i as u8 % 3),
                    book: 200 + i as u8,
                    prefix_key: u64::MAX - i as u64,
                    prefix_chars: 70_000 + i as u32,
                },
            };
            spill.sample(&s);
            written.push(s);
            spill.iteration(&IterationSample {
                vu: i as u32,
                workflow: 3,
                iteration: 9,
                start: Duration::from_millis(10 - i as u64),
                duration: Duration::from_millis(4),
                ok: i == 0,
                warmup: false,
            });
        }
        let all = Samples::new(Arc::new(spill));
        let (samples, iterations) = (all.to_vec(), all.iterations());
        written.sort_by_key(|s| s.start);
        assert_eq!(format!("{samples:?}"), format!("{written:?}"));
        assert_eq!(iterations.len(), 4);
        assert!(iterations.windows(2).all(|w| w[0].start <= w[1].start));
        assert_eq!(iterations[0].workflow, 3);
        // Two runs, the second a second later, read as one.
        let mut two = all.clone();
        two.extend(all.clone().shifted(Duration::from_secs(1)));
        let v = two.to_vec();
        assert_eq!(v.len(), 8);
        assert_eq!(v[7].start, written[3].start + Duration::from_secs(1));
        assert_eq!(two.len(), 8);
    }
}
