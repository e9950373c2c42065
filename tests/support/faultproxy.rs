//! A scriptable fault-injecting HTTP/1.1 proxy between ferry and a real test registry: canned statuses (429 with Retry-After, 5xx) for the first N matching requests, delays, Docker Hub-style `RateLimit-*` headers with a sliding-window quota, the referrers API and tag-list pages for a registry that lacks them, a bandwidth limit on blob bodies, and a log of every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

/// What a rule does to a request it matches.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with this status without asking the registry; `retry_after` becomes `Retry-After`.
    Status {
        /// The HTTP status.
        code: u16,
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// Answer with this status and body without asking the registry.
    Reply {
        /// The HTTP status.
        code: u16,
        /// The body (a registry error JSON).
        body: String,
    },
    /// Wait, then forward.
    Delay(Duration),
    /// Answer `307` with this `Location` (`{path}` is replaced by the request's path and query).
    Redirect(String),
    /// Forward, then replace this response header's value.
    SetHeader(String, String),
    /// Forward, then flip one byte of the response body (same length, wrong content).
    CorruptBody,
    /// Forward, then cut the connection after this many bytes of the response body.
    CutAfter(u64),
    /// Read this many bytes of the request body, then drop the connection (a reset mid-upload).
    CutRequestAfter(u64),
    /// Read the whole request body (counted in `bytes_in`), then answer this status instead of
    /// forwarding: a registry that throttles an upload only after taking all of it.
    RefuseAfterBody {
        /// The HTTP status.
        code: u16,
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// Answer this status with an endless-looking body of `size` bytes, counting what was sent.
    HugeBody {
        /// The HTTP status.
        code: u16,
        /// How many bytes the body claims and would send.
        size: u64,
    },
}

/// Applies `action` to the first `times` requests whose method (if given) and path match.
#[derive(Clone, Debug)]
pub struct Rule {
    /// A name for the log.
    pub name: String,
    /// `GET`, `PUT`, …; `None` for any.
    pub method: Option<String>,
    /// A substring of the path (with query).
    pub path_contains: String,
    /// Only requests carrying this header (lowercase name) match.
    pub with_header: Option<String>,
    /// How many more requests it applies to.
    pub times: usize,
    /// What it does.
    pub action: Action,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Since the proxy started.
    pub at: Duration,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The status the client got.
    pub status: u16,
    /// The rule (or `ratelimit`) that answered instead of the registry.
    pub injected: Option<String>,
    /// Request headers, values included (tests search them for secrets).
    pub headers: Vec<(String, String)>,
    /// Request body bytes forwarded to the registry (or read, for a rule that answers itself).
    pub bytes_in: u64,
    /// Response body bytes of a forwarded answer handed to the client, counted as they leave
    /// (so an answer cut midway counts what got through).
    pub bytes_out: u64,
}

struct Quota {
    limit: usize,
    window: Duration,
    served: VecDeque<Instant>,
}

#[derive(Default)]
struct State {
    /// Bytes of `HugeBody` answers actually sent.
    huge_sent: u64,
    rules: Vec<Rule>,
    log: Vec<Entry>,
    quota: Option<Quota>,
    /// When set, the proxy implements the OCI referrers API in front of a registry that lacks
    /// it: (repository, subject) → descriptors of manifests pushed with that subject.
    referrers: Option<std::collections::HashMap<(String, String), Vec<serde_json::Value>>>,
    /// When set, tag lists are served in pages of `?n=` after `?last=`, with `Link` to the
    /// next, as the distribution spec says (Debian's docker-registry 2.8 ignores `n` for tags).
    paginate_tags: bool,
    /// When set, blob bodies (uploads and downloads alike) share this bandwidth.
    pace: Option<Arc<Pacer>>,
}

/// A bandwidth shared by every body it paces: each slice of bytes is let through at the time
/// the rate allows, whichever request it belongs to, so concurrent uploads add up to the rate.
pub struct Pacer {
    bytes_per_sec: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    /// Slices of at most this many bytes, so the pace is smooth at low rates.
    const SLICE: usize = 16 << 10;
    /// How far behind the schedule the pace may fall before time lost is lost for good.
    const CATCH_UP: Duration = Duration::from_secs(1);

    async fn take(&self, n: usize) {
        let at = {
            let mut next = self.next.lock().unwrap();
            // A proxy thread that was not scheduled for a while catches up (up to a second's
            // worth), so a loaded machine does not stretch the pace for good.
            let start = (*next).max(Instant::now() - Self::CATCH_UP);
            *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
            *next
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// `body` let through at `pace` (unchanged without one), in slices of [`Pacer::SLICE`].
fn paced<E: Send + 'static>(
    body: impl futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    pace: Option<Arc<Pacer>>,
) -> impl futures::Stream<Item = Result<Bytes, E>> + Send + 'static {
    body.flat_map(|r| {
        let parts: Vec<Result<Bytes, E>> = match r {
            Ok(b) => (0..b.len())
                .step_by(Pacer::SLICE)
                .map(|at| Ok(b.slice(at..(at + Pacer::SLICE).min(b.len()))))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(parts)
    })
    .then(move |r| {
        let pace = pace.clone();
        async move {
            if let (Some(p), Ok(b)) = (&pace, &r) {
                p.take(b.len()).await;
            }
            r
        }
    })
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts in front of `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_with(upstream, None)
    }

    /// Starts in front of `upstream` with blob bodies limited to `bytes_per_sec` in all (see
    /// [`FaultProxy::limit_rate`]), and a small receive buffer on its connections: loopback's
    /// buffers (megabytes each) would otherwise take an upload's bytes long before the pace
    /// lets them through, and a client's byte count would run far ahead of the transfer.
    pub fn start_paced(upstream: &str, bytes_per_sec: u64) -> FaultProxy {
        let p = FaultProxy::start_with(upstream, Some(Self::PACED_RECV_BUFFER));
        p.limit_rate(bytes_per_sec);
        p
    }

    /// The receive buffer of a paced proxy's connections.
    const PACED_RECV_BUFFER: u32 = 64 << 10;

    fn start_with(upstream: &str, recv_buffer: Option<u32>) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (st, upstream) = (state.clone(), upstream.to_owned());
        let started = Instant::now();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // Accepted connections inherit the listener's receive buffer.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                if let Some(n) = recv_buffer {
                    socket.set_recv_buffer_size(n).unwrap();
                }
                socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let listener = socket.listen(1024).unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, st, upstream, started, stopped).await
            });
        });
        let addr = addr.recv().unwrap();
        FaultProxy {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Adds a rule (rules are tried in the order added).
    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// A 429 with `Retry-After: secs` for the first `times` requests whose path contains `path`.
    pub fn throttle(&self, name: &str, method: Option<&str>, path: &str, times: usize, secs: u64) {
        self.add(Rule {
            name: name.into(),
            method: method.map(str::to_owned),
            path_contains: path.into(),
            with_header: None,
            times,
            action: Action::Status {
                code: 429,
                retry_after: Some(secs.to_string()),
            },
        });
    }

    /// Docker Hub's quota: `limit` manifest GETs per sliding `window_s`, announced in
    /// `RateLimit-Limit`/`RateLimit-Remaining` on every answer; over it, 429 with `Retry-After`.
    pub fn set_ratelimit(&self, limit: usize, window_s: u64) {
        self.state.lock().unwrap().quota = Some(Quota {
            limit,
            window: Duration::from_secs(window_s),
            served: VecDeque::new(),
        });
    }

    /// Implements the referrers API: `GET /v2/NAME/referrers/DIGEST` answers an index (empty
    /// if nothing refers to DIGEST), and a manifest PUT with a `subject` is answered with
    /// `OCI-Subject`, as OCI 1.1 registries do.
    pub fn serve_referrers(&self) {
        self.state.lock().unwrap().referrers = Some(Default::default());
    }

    /// Serves tag lists in pages: `GET /v2/NAME/tags/list?n=N[&last=T]` answers the N tags
    /// after T of the registry's full list (sorted), with `Link: <…>; rel="next"` while more
    /// remain, as registries that paginate do.
    pub fn paginate_tags(&self) {
        self.state.lock().unwrap().paginate_tags = true;
    }

    /// Limits blob bodies (`/blobs/` paths: uploads and downloads) to `bytes_per_sec` in all,
    /// shared by every request: a copy through the proxy takes its bytes over the rate.
    pub fn limit_rate(&self, bytes_per_sec: u64) {
        self.state.lock().unwrap().pace = Some(Arc::new(Pacer {
            bytes_per_sec,
            next: Mutex::new(Instant::now()),
        }));
    }

    /// Bytes of `HugeBody` answers that left the proxy (the client stopped reading after that).
    pub fn huge_bytes_sent(&self) -> u64 {
        self.state.lock().unwrap().huge_sent
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Entry> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Mutex<State>>,
    upstream: String,
    started: Instant,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = &mut stopped => return,
        };
        let (state, upstream, client) = (state.clone(), upstream.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(
                    req,
                    state.clone(),
                    upstream.clone(),
                    client.clone(),
                    started,
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    upstream: String,
    client: reqwest::Client,
    started: Instant,
) -> Result<Response<Body>, std::io::Error> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut entry = Entry {
        at: started.elapsed(),
        method: method.clone(),
        path: path.clone(),
        status: 0,
        injected: None,
        headers,
        bytes_in: 0,
        bytes_out: 0,
    };

    let serves_referrers = state.lock().unwrap().referrers.is_some();
    if serves_referrers {
        if let Some(r) = referrers_api(&method, &path, &state) {
            entry.status = 200;
            state.lock().unwrap().log.push(entry);
            return Ok(r);
        }
        if method == "PUT" && path.contains("/manifests/") {
            return Ok(put_with_subject(req, path, entry, state, upstream, client).await);
        }
    }

    let paginates = state.lock().unwrap().paginate_tags;
    if paginates && method == "GET" && path.contains("/tags/list?") {
        let r = tags_page(&req, &path, &upstream, &client).await;
        entry.status = r.status().as_u16();
        state.lock().unwrap().log.push(entry);
        return Ok(r);
    }

    // Rules first, then the quota.
    let (action, quota_headers, over_quota) = {
        let mut st = state.lock().unwrap();
        let action = st
            .rules
            .iter_mut()
            .find(|r| {
                r.times > 0
                    && r.method.as_deref().is_none_or(|m| m == method)
                    && path.contains(&r.path_contains)
                    && r.with_header
                        .as_deref()
                        .is_none_or(|h| req.headers().contains_key(h))
            })
            .map(|r| {
                r.times -= 1;
                (r.name.clone(), r.action.clone())
            });
        let counted = method == "GET" && path.contains("/manifests/");
        let (mut qh, mut over) = (Vec::new(), None);
        if let Some(q) = st.quota.as_mut() {
            let now = Instant::now();
            while q.served.front().is_some_and(|t| now - *t >= q.window) {
                q.served.pop_front();
            }
            if counted && action.is_none() {
                if q.served.len() >= q.limit {
                    let wait = q.served.front().map_or(q.window, |t| q.window - (now - *t));
                    over = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                } else {
                    q.served.push_back(now);
                }
            }
            let w = q.window.as_secs();
            qh.push(("ratelimit-limit".to_owned(), format!("{};w={w}", q.limit)));
            qh.push((
                "ratelimit-remaining".to_owned(),
                format!("{};w={w}", q.limit - q.served.len().min(q.limit)),
            ));
        }
        (action, qh, over)
    };

    let canned = |code: u16, retry_after: Option<String>, name: String, entry: &mut Entry| {
        let mut b = Response::builder()
            .status(code)
            .header("content-type", "application/json");
        if let Some(r) = retry_after {
            b = b.header("retry-after", r);
        }
        for (k, v) in &quota_headers {
            b = b.header(k, v);
        }
        entry.status = code;
        entry.injected = Some(name);
        let code_name = if code == 429 {
            "TOOMANYREQUESTS"
        } else {
            "UNAVAILABLE"
        };
        b.body(full(format!(
            r#"{{"errors":[{{"code":"{code_name}","message":"injected by the test proxy"}}]}}"#
        )))
        .unwrap()
    };

    let mut delay = None;
    let mut after = None;
    match action {
        Some((name, Action::Redirect(to))) => {
            let mut b = req.into_body();
            while let Some(Ok(_)) = b.frame().await {}
            entry.status = 307;
            entry.injected = Some(name);
            state.lock().unwrap().log.push(entry);
            return Ok(Response::builder()
                .status(307)
                .header("location", to.replace("{path}", &path))
                .body(full(Bytes::new()))
                .unwrap());
        }
        Some((name, Action::CutRequestAfter(limit))) => {
            let mut body = req.into_body();
            let mut read = 0u64;
            while read < limit {
                match body.frame().await {
                    Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
            entry.injected = Some(name);
            entry.bytes_in = read;
            state.lock().unwrap().log.push(entry);
            // An error from the service makes hyper drop the connection.
            return Err(std::io::Error::other("cut by the test proxy"));
        }
        Some((name, Action::HugeBody { code, size })) => {
            let mut b = req.into_body();
            while let Some(Ok(_)) = b.frame().await {}
            entry.status = code;
            entry.injected = Some(name);
            state.lock().unwrap().log.push(entry);
            let st = state.clone();
            let chunk = Bytes::from(vec![b'x'; 64 << 10]);
            let body = futures::stream::unfold(0u64, move |sent| {
                let (st, chunk) = (st.clone(), chunk.clone());
                async move {
                    if sent >= size {
                        return None;
                    }
                    let n = chunk.len().min((size - sent) as usize);
                    st.lock().unwrap().huge_sent += n as u64;
                    Some((
                        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n))),
                        sent + n as u64,
                    ))
                }
            });
            return Ok(Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .header("content-length", size)
                .body(BodyExt::boxed(StreamBody::new(body)))
                .unwrap());
        }
        Some((name, a @ (Action::SetHeader(..) | Action::CorruptBody | Action::CutAfter(_)))) => {
            entry.injected = Some(name);
            after = Some(a);
        }
        Some((name, Action::RefuseAfterBody { code, retry_after })) => {
            let mut body = req.into_body();
            let mut read = 0u64;
            while let Some(Ok(f)) = body.frame().await {
                read += f.data_ref().map_or(0, |d| d.len() as u64);
            }
            entry.bytes_in = read;
            let r = canned(code, retry_after, name, &mut entry);
            state.lock().unwrap().log.push(entry);
            return Ok(r);
        }
        Some((name, Action::Status { code, retry_after })) => {
            // Read what the client sends, so it sees the status rather than a broken pipe.
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            let r = canned(code, retry_after, name, &mut entry);
            state.lock().unwrap().log.push(entry);
            return Ok(r);
        }
        Some((name, Action::Reply { code, body })) => {
            let mut b = req.into_body();
            while let Some(Ok(_)) = b.frame().await {}
            entry.status = code;
            entry.injected = Some(name);
            state.lock().unwrap().log.push(entry);
            return Ok(Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(full(body))
                .unwrap());
        }
        Some((name, Action::Delay(d))) => {
            entry.injected = Some(name);
            delay = Some(d);
        }
        None => {}
    }
    if let Some(secs) = over_quota {
        let r = canned(429, Some(secs.to_string()), "ratelimit".into(), &mut entry);
        state.lock().unwrap().log.push(entry);
        return Ok(r);
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    // Forward, streaming both ways; the Host header is kept so Location URLs point back here.
    let (parts, body) = req.into_parts();
    let mut out = client.request(
        reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap(),
        format!("http://{upstream}{path}"),
    );
    for (k, v) in parts.headers.iter() {
        if !matches!(k.as_str(), "connection" | "transfer-encoding") {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = counted.clone();
    let pace = if path.contains("/blobs/") {
        state.lock().unwrap().pace.clone()
    } else {
        None
    };
    let stream = BodyStream::new(body)
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
        .map_ok(move |d: Bytes| {
            counter.fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
            d
        })
        .map_err(std::io::Error::other);
    out = out.body(reqwest::Body::wrap_stream(paced(stream, pace.clone())));
    let sent = out.send().await;
    entry.bytes_in = counted.load(std::sync::atomic::Ordering::Relaxed);
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            entry.status = 502;
            state.lock().unwrap().log.push(entry);
            return Ok(Response::builder()
                .status(502)
                .body(full(format!("upstream: {e}")))
                .unwrap());
        }
    };
    let mut b = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !matches!(k.as_str(), "connection" | "transfer-encoding") {
            if let Some(Action::SetHeader(name, value)) = &after {
                if k.as_str().eq_ignore_ascii_case(name) {
                    b = b.header(k.as_str(), value.as_str());
                    continue;
                }
            }
            b = b.header(k.as_str(), v.as_bytes());
        }
    }
    for (k, v) in &quota_headers {
        b = b.header(k, v);
    }
    entry.status = resp.status().as_u16();
    let at = {
        let mut st = state.lock().unwrap();
        st.log.push(entry);
        st.log.len() - 1
    };
    match after {
        Some(Action::CorruptBody) => {
            let mut bytes = resp.bytes().await.unwrap_or_default().to_vec();
            let mid = bytes.len() / 2;
            if let Some(x) = bytes.get_mut(mid) {
                *x ^= 0x20;
            }
            state.lock().unwrap().log[at].bytes_out = bytes.len() as u64;
            return Ok(b.body(full(bytes)).unwrap());
        }
        Some(Action::CutAfter(limit)) => {
            // Send `limit` bytes, then fail the stream: the client sees the connection break.
            let mut sent = 0u64;
            let body = resp.bytes_stream().map(move |r| {
                let chunk = r.map_err(std::io::Error::other)?;
                if sent >= limit {
                    return Err(std::io::Error::other("cut by the test proxy"));
                }
                let n = chunk.len().min((limit - sent) as usize);
                sent += n as u64;
                Ok(Frame::data(chunk.slice(..n)))
            });
            let body = counted_out(body, state, at);
            return Ok(b.body(BodyExt::boxed(StreamBody::new(body))).unwrap());
        }
        _ => {}
    }
    let body =
        paced(resp.bytes_stream(), pace).map(|r| r.map(Frame::data).map_err(std::io::Error::other));
    let body = StreamBody::new(counted_out(body, state, at));
    Ok(b.body(BodyExt::boxed(body)).unwrap())
}

/// `body`, adding each data frame's length to the `bytes_out` of log entry `at` as it leaves.
fn counted_out(
    body: impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + 'static,
    state: Arc<Mutex<State>>,
    at: usize,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + 'static {
    body.inspect(move |r| {
        if let Some(d) = r.as_ref().ok().and_then(Frame::data_ref) {
            state.lock().unwrap().log[at].bytes_out += d.len() as u64;
        }
    })
}

/// One page of a tag list: the registry's whole list, sorted, cut to `n` after `last`.
async fn tags_page(
    req: &Request<Incoming>,
    path: &str,
    upstream: &str,
    client: &reqwest::Client,
) -> Response<Body> {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    let n: usize = get("n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    let last = get("last");
    let mut out = client.get(format!("http://{upstream}{base}"));
    if let Some(a) = req.headers().get("authorization") {
        out = out.header("authorization", a.as_bytes());
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(full(format!("upstream: {e}")))
                .unwrap()
        }
    };
    let status = resp.status().as_u16();
    let mut doc: serde_json::Value = match resp.bytes().await {
        Ok(b) if status == 200 => serde_json::from_slice(&b).unwrap_or_default(),
        Ok(b) => return Response::builder().status(status).body(full(b)).unwrap(),
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(full(format!("upstream: {e}")))
                .unwrap()
        }
    };
    let mut tags: Vec<String> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    tags.sort();
    let after: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let page: Vec<String> = after.iter().take(n).cloned().collect();
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    if after.len() > page.len() {
        let next = format!(
            "<{base}?n={n}&last={}>; rel=\"next\"",
            page.last().cloned().unwrap_or_default()
        );
        b = b.header("link", next);
    }
    doc["tags"] = serde_json::json!(page);
    b.body(full(serde_json::to_vec(&doc).unwrap())).unwrap()
}

/// `GET /v2/NAME/referrers/DIGEST`, answered from what was pushed through the proxy.
fn referrers_api(method: &str, path: &str, state: &Mutex<State>) -> Option<Response<Body>> {
    let rest = path.strip_prefix("/v2/")?;
    let (name, digest) = rest.split_once("/referrers/")?;
    if method != "GET" {
        return None;
    }
    let digest = digest.split('?').next().unwrap_or(digest);
    let entries = state
        .lock()
        .unwrap()
        .referrers
        .as_ref()?
        .get(&(name.to_owned(), digest.to_owned()))
        .cloned()
        .unwrap_or_default();
    let body = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    Some(
        Response::builder()
            .status(200)
            .header("content-type", "application/vnd.oci.image.index.v1+json")
            .body(full(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    )
}

/// A manifest PUT: forwarded whole; when it names a subject and the registry stored it, it is
/// indexed for the referrers API and the answer carries `OCI-Subject`.
async fn put_with_subject(
    req: Request<Incoming>,
    path: String,
    mut entry: Entry,
    state: Arc<Mutex<State>>,
    upstream: String,
    client: reqwest::Client,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut out = client.put(format!("http://{upstream}{path}"));
    for (k, v) in parts.headers.iter() {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = match out.body(bytes.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            entry.status = 502;
            state.lock().unwrap().log.push(entry);
            return Response::builder()
                .status(502)
                .body(full(format!("upstream: {e}")))
                .unwrap();
        }
    };
    let status = resp.status().as_u16();
    let mut b = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if !matches!(k.as_str(), "connection" | "transfer-encoding") {
            b = b.header(k.as_str(), v.as_bytes());
        }
    }
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if (200..300).contains(&status) {
        if let Some(subject) = doc["subject"]["digest"].as_str() {
            let name = path
                .strip_prefix("/v2/")
                .and_then(|r| r.split_once("/manifests/"))
                .map(|(n, _)| n.to_owned())
                .unwrap_or_default();
            let digest = format!("sha256:{}", {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(&bytes))
            });
            let mut d = serde_json::json!({"mediaType": doc["mediaType"], "digest": digest, "size": bytes.len()});
            if let Some(t) = doc["artifactType"]
                .as_str()
                .or(doc["config"]["mediaType"].as_str())
            {
                d["artifactType"] = serde_json::json!(t);
            }
            if doc["annotations"].is_object() {
                d["annotations"] = doc["annotations"].clone();
            }
            let mut st = state.lock().unwrap();
            let list = st
                .referrers
                .as_mut()
                .unwrap()
                .entry((name, subject.to_owned()))
                .or_default();
            if !list.iter().any(|e| e["digest"] == d["digest"]) {
                list.push(d);
            }
            b = b.header("oci-subject", subject);
        }
    }
    let body = resp.bytes().await.unwrap_or_default();
    entry.status = status;
    state.lock().unwrap().log.push(entry);
    b.body(full(body)).unwrap()
}
