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

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;

use crate::digest::{Digest, Hasher};
use crate::registry::{BlobStream, RegistryError};

/// Memory each consumer may hold before it spills to disk.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;
/// Size of reads back from a spill file.
const SPILL_READ: u64 = 256 << 10;

/// Called with the number of bytes handed to one consumer.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Bytes read from the source.
    pub read: u64,
    /// Bytes written to spill files, summed over consumers.
    pub spilled: u64,
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
        },
        consumers,
    )
}

impl Producer {
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
        result.map(|read| FanoutStats { read, spilled })
    }

    async fn pump(&mut self) -> Result<u64, Stopped> {
        let mut hasher = Hasher::new();
        let mut pending: Option<Bytes> = None;
        while let Some(chunk) = self.source.next().await {
            let chunk = chunk.map_err(|e| Stopped::Source(Arc::new(e)))?;
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

    async fn deliver(&self, chunk: Bytes) -> Result<(), Stopped> {
        let shared = &self.shared;
        // Wait until at least one consumer keeps up; stop early if every consumer has gone.
        loop {
            let room = shared.room.notified();
            let (any_room, any_live) = shared.sinks.iter().fold((false, false), |(r, l), sink| {
                let s = sink.state.lock().expect("sink lock");
                (r || shared.has_room(&s, chunk.len()), l || !s.gone)
            });
            if !any_live {
                return Err(Stopped::Abandoned);
            }
            if any_room {
                break;
            }
            room.await;
        }
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
