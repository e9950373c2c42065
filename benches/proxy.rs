//! A throttling TCP proxy for benchmarks: a delay line adding latency each way, a token bucket capping server-to-client throughput across all connections, and byte counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Shared throughput budget in bytes per second.
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    async fn take(&self, n: usize) {
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap();
                let now = Instant::now();
                // Allow a burst of at most 50 ms of traffic.
                s.0 =
                    (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.rate * 0.05);
                s.1 = now;
                if s.0 >= n as f64 {
                    s.0 -= n as f64;
                    return;
                }
                (n as f64 - s.0) / self.rate
            };
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// Counters of a running proxy.
#[derive(Default)]
pub struct Counters {
    /// Bytes from the upstream server to clients.
    pub down: AtomicU64,
    /// Bytes from clients to the upstream server.
    pub up: AtomicU64,
}

/// Starts a proxy on an ephemeral loopback port in front of `upstream`; returns its port and counters.
pub fn start(
    rt: &tokio::runtime::Runtime,
    upstream: String,
    latency: Duration,
    down_bytes_per_s: f64,
) -> (u16, Arc<Counters>) {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let counters = Arc::new(Counters::default());
    let bucket = Arc::new(Bucket {
        rate: down_bytes_per_s,
        state: Mutex::new((0.0, Instant::now())),
    });
    let c = counters.clone();
    rt.spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (upstream, c, bucket) = (upstream.clone(), c.clone(), bucket.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pipe(cr, sw, latency, None, c.clone(), false);
                let down = pipe(sr, cw, latency, Some(bucket), c, true);
                let _ = tokio::join!(up, down);
            });
        }
    });
    (port, counters)
}

/// Copies one direction through a delay line: bytes read at t are written at t + latency.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
    bucket: Option<Arc<Bucket>>,
    counters: Arc<Counters>,
    down: bool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + latency, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if let Some(b) = &bucket {
                b.take(chunk.len()).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let counter = if down { &counters.down } else { &counters.up };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
