//! copy::fanout: reads one blob once and streams it to many uploads at the same time, verifying it on the fly.
//!
//! Each consumer has a small in-memory queue. A consumer that falls behind does not slow the
//! others: once its queue is full, further chunks for it go to an unlinked temp file that it
//! reads back in order. The source is paced by the *fastest* consumer (the producer waits only
//! when no consumer has room), so memory stays flat and disk is used only for real laggards.
//!
//! The last chunk is withheld until the whole blob has hashed to its digest, so no destination
//! can ever receive a complete blob whose bytes are wrong: on a mismatch every consumer gets an
//! error instead, and the upload is abandoned before the registry could commit it.
//!
//! Faults do not break read-once. A source stream cut midway is reopened where it broke
//! ([`Producer::resuming`]: a `Range` request) with the hasher carried across, so consumers only
//! see a pause; a source that sends the whole blob again instead has its first bytes re-hashed,
//! checked against what was already delivered, and skipped. And the producer can keep a copy of
//! the blob in an unlinked temp file ([`Producer::keeping`]): once the blob has verified, a
//! destination whose upload failed is sent the [`Kept`] copy, not another read of the source.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::{oneshot, Notify};

use crate::digest::{Digest, Hasher};
use crate::registry::{BlobStream, RegistryError};
use crate::transport::retry::{Attempts, RetryPolicy};

/// Memory each consumer may hold before it spills to disk.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;
/// Size of reads back from a spill file.
const SPILL_READ: u64 = 256 << 10;

/// Called with the number of bytes handed to one consumer.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

/// Opens the source again at an offset after a cut: the stream, and where it really starts
/// (the offset, or 0 when the source can only send the whole blob). See `Repo::blob_get_from`.
pub type Reopen =
    Arc<dyn Fn(u64) -> BoxFuture<'static, Result<(BlobStream, u64), RegistryError>> + Send + Sync>;

/// What a kept copy is called in errors: ferry's own disk, neither the source nor a destination.
pub const KEPT_COPY: &str = "ferry's local copy of the blob";

/// A whole blob, verified against its digest as it was read, kept in an unlinked temp file on
/// ferry's local disk so that it can be sent again without asking the source. Gone when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct Kept {
    file: Option<Arc<File>>,
    len: u64,
}

impl Kept {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes, read back in order (the reader verifies them again, as it would the source's).
    pub fn stream(&self) -> BlobStream {
        let (file, len) = (self.file.clone(), self.len);
        futures::stream::unfold(0u64, move |at| {
            let file = file.clone();
            async move {
                let file = file.filter(|_| at < len)?;
                let mut buf = vec![0u8; (len - at).min(SPILL_READ) as usize];
                match file.read_exact_at(&mut buf, at) {
                    Ok(()) => {
                        let next = at + buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), next))
                    }
                    Err(source) => Some((
                        Err(RegistryError::Io {
                            path: KEPT_COPY.into(),
                            source,
                        }),
                        len,
                    )),
                }
            }
        })
        .boxed()
    }
}

/// The copy being written while the source is read.
struct Keep {
    file: Option<File>,
    len: u64,
    /// Asked once every consumer has gone before the end: will anyone want the copy?
    wanted: Option<oneshot::Receiver<bool>>,
    /// Its answer.
    alone: Option<bool>,
}

struct Spill {
    file: File,
    written: u64,
    read: u64,
}

#[derive(Default)]
struct State {
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    spill: Option<Spill>,
    /// True while the consumer still has unread bytes in the spill file: new chunks must follow them there.
    spilling: bool,
    end: Option<Result<(), Arc<RegistryError>>>,
    gone: bool,
    /// Bytes spilled in total (for tests and reports).
    spilled: u64,
}

struct Sink {
    state: Mutex<State>,
    ready: Notify,
}

struct Shared {
    sinks: Vec<Arc<Sink>>,
    room: Notify,
    cap: usize,
}

impl Shared {
    fn has_room(&self, s: &State, len: usize) -> bool {
        !s.gone && !s.spilling && (s.mem_bytes == 0 || s.mem_bytes + len <= self.cap)
    }
}

/// Summary of one fan-out.
#[derive(Clone, Debug, Default)]
pub struct FanoutStats {
    /// Bytes read from the source (a resumed read's bytes included, a re-read prefix too).
    pub read: u64,
    /// Bytes written to spill files, summed over consumers.
    pub spilled: u64,
    /// Times the source was reopened after a cut.
    pub resumed: u32,
    /// The verified copy, when [`Producer::keeping`] asked for one and it could be written.
    pub kept: Option<Kept>,
}

/// Why a fan-out stopped before the blob was delivered.
#[derive(Clone, Debug)]
pub enum Stopped {
    /// The source's stream failed or its bytes were wrong: every consumer got this error.
    Source(Arc<RegistryError>),
    /// Every consumer went away (each destination's own upload failed): the source is not at
    /// fault, and the destinations' errors say why.
    Abandoned,
    /// A spill file for a slow consumer could not be written or read (ferry's local disk).
    Spill(Arc<RegistryError>),
}

impl Stopped {
    /// The error consumers still reading were given.
    fn to_consumers(&self) -> Arc<RegistryError> {
        match self {
            Stopped::Source(e) | Stopped::Spill(e) => e.clone(),
            Stopped::Abandoned => Arc::new(RegistryError::Protocol {
                host: "fan-out".into(),
                detail: "every destination stopped reading".into(),
            }),
        }
    }
}

/// The reading half: drive [`Producer::run`] while the consumers upload.
pub struct Producer {
    shared: Arc<Shared>,
    source: BlobStream,
    expected: Digest,
    size: u64,
    reopen: Option<(Reopen, RetryPolicy)>,
    keep: Option<Keep>,
    read: u64,
    resumed: u32,
}

/// Splits `source` (which must hash to `expected` and be `size` bytes) into `n` consumer streams.
pub fn fanout(
    source: BlobStream,
    expected: Digest,
    size: u64,
    on_bytes: Vec<OnBytes>,
    cap: usize,
) -> (Producer, Vec<BlobStream>) {
    let sinks: Vec<Arc<Sink>> = on_bytes
        .iter()
        .map(|_| {
            Arc::new(Sink {
                state: Mutex::default(),
                ready: Notify::new(),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        sinks,
        room: Notify::new(),
        cap: cap.max(1),
    });
    let consumers = on_bytes
        .into_iter()
        .enumerate()
        .map(|(i, cb)| {
            let c = Consumer {
                shared: shared.clone(),
                index: i,
                on_bytes: cb,
                done: false,
            };
            futures::stream::unfold(
                c,
                |mut c| async move { c.next().await.map(|item| (item, c)) },
            )
            .boxed()
        })
        .collect();
    (
        Producer {
            shared,
            source,
            expected,
            size,
            reopen: None,
            keep: None,
            read: 0,
            resumed: 0,
        },
        consumers,
    )
}

impl Producer {
    /// When the source stream breaks off with a transient error, reopens it where it broke, up
    /// to `policy`'s attempts and waiting budget (the same as any request's). The hash runs on
    /// across the resume; a reopened stream that starts over from byte 0 is re-hashed up to the
    /// break, must match what was delivered, and is skipped to there.
    pub fn resuming(mut self, reopen: Reopen, policy: RetryPolicy) -> Self {
        self.reopen = Some((reopen, policy));
        self
    }

    /// Writes every byte read to an unlinked temp file too; a run that verifies the blob hands it
    /// back as [`FanoutStats::kept`]. Should every consumer go before the end, `wanted` is
    /// awaited: `true` (someone will send the blob again) reads on into the copy alone, so
    /// that the retry need not read the source again; `false` stops ([`Stopped::Abandoned`]).
    /// The copy is a saving, never a requirement: if it cannot be written, it is dropped.
    pub fn keeping(mut self, wanted: oneshot::Receiver<bool>) -> Self {
        self.keep = Some(Keep {
            file: None,
            len: 0,
            wanted: Some(wanted),
            alone: None,
        });
        self
    }

    /// Reads the source to the end, feeding every live consumer; verifies length and digest before releasing the last chunk.
    pub async fn run(mut self) -> Result<FanoutStats, Stopped> {
        let result = self.pump().await;
        let outcome = result.as_ref().map(|_| ()).map_err(Stopped::to_consumers);
        let mut spilled = 0;
        for sink in &self.shared.sinks {
            let mut s = sink.state.lock().expect("sink lock");
            s.end = Some(outcome.clone());
            spilled += s.spilled;
            drop(s);
            sink.ready.notify_one();
        }
        let kept = match (&result, self.keep.take()) {
            (Ok(len), Some(k)) if k.len == *len => Some(Kept {
                file: k.file.map(Arc::new),
                len: k.len,
            }),
            _ => None,
        };
        result.map(|_| FanoutStats {
            read: self.read,
            spilled,
            resumed: self.resumed,
            kept,
        })
    }

    /// After the source broke off at `at` bytes: reopens it there (or from 0, then `again`
    /// re-hashes the prefix), within the retry policy. Otherwise the break is the source's.
    async fn resume(
        &mut self,
        cut: RegistryError,
        at: u64,
        attempts: &mut Option<Attempts>,
        again: &mut Option<Hasher>,
    ) -> Result<(), Stopped> {
        let Some((reopen, policy)) = self.reopen.clone() else {
            return Err(Stopped::Source(Arc::new(cut)));
        };
        let attempts = attempts.get_or_insert_with(|| Attempts::new(policy));
        let mut last = cut;
        loop {
            if !last.is_transient() {
                return Err(Stopped::Source(Arc::new(last)));
            }
            let Some(delay) = attempts.next_delay(None) else {
                return Err(Stopped::Source(Arc::new(last)));
            };
            tracing::debug!(
                blob = %self.expected,
                offset = at,
                attempt = attempts.made(),
                "{last}: resuming the download where it broke"
            );
            tokio::time::sleep(delay).await;
            match reopen(at).await {
                Ok((stream, from)) if from == at => {
                    self.source = stream;
                    *again = None;
                }
                Ok((stream, 0)) => {
                    tracing::debug!(blob = %self.expected, offset = at, "the source sent the whole blob again: checking and skipping what was delivered");
                    self.source = stream;
                    *again = Some(Hasher::new());
                }
                Ok((_, from)) => {
                    return Err(Stopped::Source(Arc::new(RegistryError::Protocol {
                        host: "source".into(),
                        detail: format!(
                            "blob {} resumed at byte {from}, not at {at} or 0",
                            self.expected
                        ),
                    })))
                }
                Err(e) => {
                    last = e;
                    continue;
                }
            }
            self.resumed += 1;
            return Ok(());
        }
    }

    async fn pump(&mut self) -> Result<u64, Stopped> {
        let mut hasher = Hasher::new();
        let mut pending: Option<Bytes> = None;
        let mut attempts = None;
        // After a resume that started over: the re-read prefix, hashed until it reaches the break.
        let mut again: Option<Hasher> = None;
        loop {
            let chunk = match self.source.next().await {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    self.resume(e, hasher.len(), &mut attempts, &mut again)
                        .await?;
                    continue;
                }
            };
            self.read += chunk.len() as u64;
            let chunk = match again.as_mut() {
                None => chunk,
                Some(re) => {
                    let take = ((hasher.len() - re.len()) as usize).min(chunk.len());
                    re.update(&chunk[..take]);
                    if re.len() < hasher.len() {
                        continue;
                    }
                    if re.clone().finish() != hasher.clone().finish() {
                        return Err(Stopped::Source(Arc::new(RegistryError::Protocol {
                            host: "source".into(),
                            detail: format!(
                                "blob {} read again after a cut differs in its first {} bytes",
                                self.expected,
                                hasher.len()
                            ),
                        })));
                    }
                    again = None;
                    chunk.slice(take..)
                }
            };
            hasher.update(&chunk);
            if hasher.len() > self.size {
                return Err(Stopped::Source(Arc::new(RegistryError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: self.size,
                    actual: hasher.len(),
                })));
            }
            if chunk.is_empty() {
                continue;
            }
            if let Some(p) = pending.replace(chunk) {
                self.deliver(p).await?;
            }
        }
        if let Some(re) = again {
            return Err(Stopped::Source(Arc::new(RegistryError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size,
                actual: re.len(),
            })));
        }
        let len = hasher.len();
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(Stopped::Source(Arc::new(RegistryError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
                len,
            })));
        }
        if len != self.size {
            return Err(Stopped::Source(Arc::new(RegistryError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size,
                actual: len,
            })));
        }
        if let Some(p) = pending {
            self.deliver(p).await?;
        }
        Ok(len)
    }

    /// Every consumer has gone: whether to read on into the kept copy alone.
    async fn read_on_alone(&mut self) -> bool {
        let Some(k) = self.keep.as_mut() else {
            return false;
        };
        if k.alone.is_none() {
            let wanted = match k.wanted.take() {
                Some(rx) => rx.await.unwrap_or(false),
                None => false,
            };
            k.alone = Some(wanted);
            if wanted {
                tracing::debug!(blob = %self.expected, "every upload failed midway: reading the rest into a local copy to send again from");
            }
        }
        k.alone == Some(true)
    }

    /// Appends a chunk to the kept copy; on failure the copy is dropped (a saving, not a need).
    fn keep_chunk(&mut self, chunk: &Bytes) {
        let Some(k) = self.keep.as_mut() else {
            return;
        };
        let written = match &mut k.file {
            Some(f) => f.write_all(chunk),
            None => tempfile::tempfile().and_then(|mut f| {
                f.write_all(chunk)?;
                k.file = Some(f);
                Ok(())
            }),
        };
        match written {
            Ok(()) => k.len += chunk.len() as u64,
            Err(e) => {
                tracing::debug!(blob = %self.expected, "cannot keep a local copy of the blob ({e}): a retry would read the source again");
                self.keep = None;
            }
        }
    }

    async fn deliver(&mut self, chunk: Bytes) -> Result<(), Stopped> {
        let shared = self.shared.clone();
        // Wait until at least one consumer keeps up; stop early if every consumer has gone
        // (unless the kept copy is still wanted).
        loop {
            let room = shared.room.notified();
            let (any_room, any_live) = shared.sinks.iter().fold((false, false), |(r, l), sink| {
                let s = sink.state.lock().expect("sink lock");
                (r || shared.has_room(&s, chunk.len()), l || !s.gone)
            });
            if !any_live {
                if !self.read_on_alone().await {
                    return Err(Stopped::Abandoned);
                }
                break;
            }
            if any_room {
                break;
            }
            room.await;
        }
        self.keep_chunk(&chunk);
        for sink in &shared.sinks {
            let mut s = sink.state.lock().expect("sink lock");
            if s.gone {
                continue;
            }
            if shared.has_room(&s, chunk.len()) {
                s.mem_bytes += chunk.len();
                s.mem.push_back(chunk.clone());
            } else {
                let spill = match &mut s.spill {
                    Some(sp) => sp,
                    None => {
                        let file = tempfile::tempfile().map_err(|source| {
                            Stopped::Spill(Arc::new(RegistryError::Io {
                                path: "spill file".into(),
                                source,
                            }))
                        })?;
                        s.spill.insert(Spill {
                            file,
                            written: 0,
                            read: 0,
                        })
                    }
                };
                spill.file.write_all(&chunk).map_err(|source| {
                    Stopped::Spill(Arc::new(RegistryError::Io {
                        path: "spill file".into(),
                        source,
                    }))
                })?;
                spill.written += chunk.len() as u64;
                s.spilling = true;
                s.spilled += chunk.len() as u64;
            }
            drop(s);
            sink.ready.notify_one();
        }
        Ok(())
    }
}

struct Consumer {
    shared: Arc<Shared>,
    index: usize,
    on_bytes: OnBytes,
    done: bool,
}

impl Consumer {
    async fn next(&mut self) -> Option<Result<Bytes, RegistryError>> {
        if self.done {
            return None;
        }
        let sink = self.shared.sinks[self.index].clone();
        loop {
            let ready = sink.ready.notified();
            {
                let mut s = sink.state.lock().expect("sink lock");
                if let Some(c) = s.mem.pop_front() {
                    s.mem_bytes -= c.len();
                    drop(s);
                    self.shared.room.notify_one();
                    (self.on_bytes)(c.len() as u64);
                    return Some(Ok(c));
                }
                if let Some(sp) = s.spill.as_mut().filter(|sp| sp.read < sp.written) {
                    let n = (sp.written - sp.read).min(SPILL_READ) as usize;
                    let mut buf = vec![0u8; n];
                    if let Err(source) = sp.file.read_exact_at(&mut buf, sp.read) {
                        self.done = true;
                        return Some(Err(RegistryError::Io {
                            path: "spill file".into(),
                            source,
                        }));
                    }
                    sp.read += n as u64;
                    if sp.read == sp.written {
                        s.spilling = false;
                    }
                    drop(s);
                    self.shared.room.notify_one();
                    (self.on_bytes)(n as u64);
                    return Some(Ok(Bytes::from(buf)));
                }
                match &s.end {
                    Some(Ok(())) => {
                        self.done = true;
                        return None;
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(RegistryError::Aborted(e.clone())));
                    }
                    None => {}
                }
            }
            ready.await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let mut s = self.shared.sinks[self.index]
            .state
            .lock()
            .expect("sink lock");
        s.gone = true;
        s.mem.clear();
        s.mem_bytes = 0;
        drop(s);
        self.shared.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(data: Vec<u8>, chunk: usize) -> BlobStream {
        let chunks: Vec<Result<Bytes, RegistryError>> = data
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    fn noop() -> OnBytes {
        Arc::new(|_| {})
    }

    async fn collect(mut s: BlobStream, delay: Duration) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.map_err(|e| e.to_string())?);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn every_consumer_gets_every_byte_and_a_slow_one_spills() {
        let d = data(3 << 20);
        let digest = Digest::of(&d);
        let (p, cs) = fanout(
            source(d.clone(), 64 << 10),
            digest,
            d.len() as u64,
            vec![noop(), noop(), noop()],
            256 << 10,
        );
        let mut cs = cs.into_iter();
        let (fast1, fast2, slow) = (cs.next().unwrap(), cs.next().unwrap(), cs.next().unwrap());
        let (stats, a, b, c) = tokio::join!(
            p.run(),
            collect(fast1, Duration::ZERO),
            collect(fast2, Duration::ZERO),
            collect(slow, Duration::from_millis(2))
        );
        let stats = stats.unwrap();
        assert_eq!(stats.read, d.len() as u64);
        assert!(stats.spilled > 0, "the slow consumer should have spilled");
        for got in [a, b, c] {
            assert!(got.unwrap() == d);
        }
    }

    #[tokio::test]
    async fn mismatch_reaches_every_consumer_and_withholds_the_end() {
        let d = data(1 << 20);
        let wrong = Digest::of(b"something else");
        let (p, cs) = fanout(
            source(d.clone(), 64 << 10),
            wrong,
            d.len() as u64,
            vec![noop(), noop()],
            1 << 20,
        );
        let mut cs = cs.into_iter();
        let (r, a, b) = tokio::join!(
            p.run(),
            collect(cs.next().unwrap(), Duration::ZERO),
            collect(cs.next().unwrap(), Duration::ZERO)
        );
        let Stopped::Source(e) = r.unwrap_err() else {
            panic!("a digest mismatch is the source's")
        };
        assert!(matches!(*e, RegistryError::DigestMismatch { .. }));
        assert!(a.unwrap_err().contains("digest mismatch"));
        assert!(b.unwrap_err().contains("digest mismatch"));
    }

    #[tokio::test]
    async fn size_mismatch_is_caught() {
        let d = data(1000);
        let (p, cs) = fanout(
            source(d.clone(), 100),
            Digest::of(&d),
            999,
            vec![noop()],
            1 << 20,
        );
        let (r, _) = tokio::join!(
            p.run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        let Stopped::Source(e) = r.unwrap_err() else {
            panic!("a size mismatch is the source's")
        };
        assert!(matches!(*e, RegistryError::SizeMismatch { .. }));
    }

    #[tokio::test]
    async fn a_dropped_consumer_does_not_stop_the_others() {
        let d = data(2 << 20);
        let (p, cs) = fanout(
            source(d.clone(), 32 << 10),
            Digest::of(&d),
            d.len() as u64,
            vec![noop(), noop()],
            64 << 10,
        );
        let mut cs = cs.into_iter();
        let keep = cs.next().unwrap();
        let mut dropped = cs.next().unwrap();
        let early = async move {
            let _ = dropped.next().await;
            drop(dropped);
        };
        let (r, got, ()) = tokio::join!(p.run(), collect(keep, Duration::ZERO), early);
        r.unwrap();
        assert!(got.unwrap() == d);
    }

    #[tokio::test]
    async fn when_every_consumer_drops_the_source_is_not_blamed() {
        let d = data(2 << 20);
        let (p, cs) = fanout(
            source(d.clone(), 32 << 10),
            Digest::of(&d),
            d.len() as u64,
            vec![noop(), noop()],
            64 << 10,
        );
        let mut cs = cs.into_iter();
        let (mut a, mut b) = (cs.next().unwrap(), cs.next().unwrap());
        let stop = async move {
            let _ = a.next().await;
            let _ = b.next().await;
            drop((a, b));
        };
        let (r, ()) = tokio::join!(p.run(), stop);
        assert!(matches!(r, Err(Stopped::Abandoned)), "{r:?}");
    }

    /// A source that breaks off after `cut` bytes with a transient error.
    fn cut_source(data: &[u8], cut: usize) -> BlobStream {
        let mut chunks: Vec<Result<Bytes, RegistryError>> = data[..cut]
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        chunks.push(Err(RegistryError::Interrupted {
            host: "source".into(),
            detail: "cut by the test".into(),
        }));
        futures::stream::iter(chunks).boxed()
    }

    /// Reopens `data` at the offset asked (`ranged`) or from 0, and records each offset asked.
    fn reopen(data: Vec<u8>, ranged: bool, asked: Arc<Mutex<Vec<u64>>>) -> Reopen {
        Arc::new(move |at| {
            asked.lock().unwrap().push(at);
            let from = if ranged { at } else { 0 };
            let s = source(data[from as usize..].to_vec(), 64 << 10);
            Box::pin(async move { Ok((s, from)) })
        })
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            budget: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_cut_source_resumes_where_it_broke_and_consumers_see_every_byte() {
        let d = data(3 << 20);
        let cut = (d.len() * 6 / 10) / (64 << 10) * (64 << 10);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (p, cs) = fanout(
            cut_source(&d, cut),
            Digest::of(&d),
            d.len() as u64,
            vec![noop(), noop()],
            1 << 20,
        );
        let p = p.resuming(reopen(d.clone(), true, asked.clone()), quick());
        let mut cs = cs.into_iter();
        let (stats, a, b) = tokio::join!(
            p.run(),
            collect(cs.next().unwrap(), Duration::ZERO),
            collect(cs.next().unwrap(), Duration::ZERO)
        );
        let stats = stats.unwrap();
        assert_eq!(stats.read, d.len() as u64, "only the tail is read again");
        assert_eq!(stats.resumed, 1);
        assert_eq!(*asked.lock().unwrap(), [cut as u64]);
        assert!(a.unwrap() == d && b.unwrap() == d);
    }

    #[tokio::test]
    async fn a_source_that_starts_over_is_checked_and_skipped_to_the_break() {
        let d = data(2 << 20);
        let cut = 1 << 20;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (p, cs) = fanout(
            cut_source(&d, cut),
            Digest::of(&d),
            d.len() as u64,
            vec![noop()],
            1 << 20,
        );
        let p = p.resuming(reopen(d.clone(), false, asked), quick());
        let (stats, got) = tokio::join!(
            p.run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        assert_eq!(stats.unwrap().read, (d.len() + cut) as u64);
        assert!(got.unwrap() == d);
    }

    #[tokio::test]
    async fn a_source_that_starts_over_with_other_bytes_is_refused() {
        let d = data(2 << 20);
        let mut other = d.clone();
        other[10] ^= 1;
        let (p, cs) = fanout(
            cut_source(&d, 1 << 20),
            Digest::of(&d),
            d.len() as u64,
            vec![noop()],
            1 << 20,
        );
        let p = p.resuming(reopen(other, false, Arc::default()), quick());
        let (r, got) = tokio::join!(
            p.run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        let Stopped::Source(e) = r.unwrap_err() else {
            panic!("inconsistent bytes are the source's")
        };
        assert!(e.to_string().contains("differs in its first"), "{e}");
        assert!(got.is_err());
    }

    #[tokio::test]
    async fn a_source_cut_more_often_than_the_policy_allows_is_the_sources_failure() {
        let d = data(1 << 20);
        let again: Reopen = Arc::new(|_| {
            Box::pin(async {
                Ok((
                    futures::stream::iter([Err(RegistryError::Interrupted {
                        host: "source".into(),
                        detail: "cut again".into(),
                    })])
                    .boxed(),
                    0,
                ))
            })
        });
        let (p, cs) = fanout(
            cut_source(&d, 1000),
            Digest::of(&d),
            d.len() as u64,
            vec![noop()],
            1 << 20,
        );
        let (r, _) = tokio::join!(
            p.resuming(again, quick()).run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        assert!(
            matches!(r, Err(Stopped::Source(ref e)) if e.is_transient()),
            "{r:?}"
        );
    }

    async fn read_kept(k: &Kept) -> Vec<u8> {
        collect(k.stream(), Duration::ZERO).await.unwrap()
    }

    #[tokio::test]
    async fn the_kept_copy_is_the_verified_blob() {
        let d = data(3 << 20);
        let (_wanted, asked) = oneshot::channel();
        let (p, cs) = fanout(
            source(d.clone(), 64 << 10),
            Digest::of(&d),
            d.len() as u64,
            vec![noop()],
            1 << 20,
        );
        let (stats, got) = tokio::join!(
            p.keeping(asked).run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        assert!(got.unwrap() == d);
        let kept = stats.unwrap().kept.expect("a copy was kept");
        assert_eq!(kept.len(), d.len() as u64);
        assert!(read_kept(&kept).await == d);
    }

    #[tokio::test]
    async fn when_every_consumer_drops_and_a_retry_is_wanted_the_read_goes_on_into_the_copy() {
        let d = data(2 << 20);
        for retry in [true, false] {
            let (wanted, asked) = oneshot::channel();
            let (p, cs) = fanout(
                source(d.clone(), 32 << 10),
                Digest::of(&d),
                d.len() as u64,
                vec![noop()],
                64 << 10,
            );
            let mut c = cs.into_iter().next().unwrap();
            let fail = async move {
                let _ = c.next().await;
                drop(c);
                let _ = wanted.send(retry);
            };
            let (r, ()) = tokio::join!(p.keeping(asked).run(), fail);
            if retry {
                let kept = r.unwrap().kept.expect("a copy was kept");
                assert!(read_kept(&kept).await == d);
            } else {
                assert!(matches!(r, Err(Stopped::Abandoned)), "{r:?}");
            }
        }
    }

    #[tokio::test]
    async fn empty_blob() {
        let (p, cs) = fanout(source(Vec::new(), 1), Digest::of(b""), 0, vec![noop()], 1);
        let (r, got) = tokio::join!(
            p.run(),
            collect(cs.into_iter().next().unwrap(), Duration::ZERO)
        );
        r.unwrap();
        assert!(got.unwrap().is_empty());
    }
}
