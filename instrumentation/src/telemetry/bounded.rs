//! Every export bounded as a whole by the export timeout, whatever the
//! collector does once it has begun to answer.
//!
//! The transports' own timeouts stop short of that. tonic's request timeout
//! ends with the response's headers, after which the call waits for the
//! message and the trailers without limit; neither it nor the connect
//! timeout covers resolving the collector's name, or a request's wait in the
//! channel's buffer while a connection is made. reqwest's blocking client
//! bounds the wait for the headers, then gives each read of the body a
//! fresh timeout, so that a collector sending a byte now and then holds the
//! export for as long as it likes. An export that hangs holds the SDK's
//! export thread with it: the span queue fills and every later span is
//! dropped, or the metrics reader, and every flush after it, waits for good.
//!
//! So a gRPC export runs as a task on the export runtime, dropped at its
//! deadline (tonic then resets its stream), and an HTTP request's own
//! timeout, which reqwest holds across the body too, is what is left of the
//! export's time.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::runtime::Handle;

/// Runs `export` as a task on `runtime` and gives up on it after `timeout`,
/// dropping it. A task, because the SDK's export threads poll their
/// exporters with a plain executor, outside any tokio runtime, where no
/// tokio timer can be made; the caller only awaits the task's end.
pub(super) async fn on_runtime<T: Send + 'static>(
    runtime: &Handle,
    timeout: Duration,
    export: impl Future<Output = T> + Send + 'static,
) -> Result<T, OTelSdkError> {
    // The timer is made inside the task: tokio's timers need its runtime.
    match runtime.spawn(async move { tokio::time::timeout(timeout, export).await }).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(_elapsed)) => Err(OTelSdkError::Timeout(timeout)),
        // Cancelled: the pipeline is shutting its runtime down.
        Err(_) => Err(OTelSdkError::InternalFailure("the export runtime has stopped".into())),
    }
}

/// How a [`BoundedSpanExport`] holds its exports to the export timeout.
#[derive(Debug)]
pub(super) enum Bound {
    /// gRPC: each export is a task on the export runtime ([`on_runtime`]).
    Runtime(Handle),
    /// HTTP: the blocking client cannot be interrupted; the deadline set
    /// here for each export bounds every request the exporter makes
    /// ([`DeadlineHttpClient`]), its retries' included.
    Blocking(Arc<Deadline>),
}

/// A span exporter whose every export, retries included, ends within
/// `timeout`: the SDK's checks its deadline only between attempts.
#[derive(Debug)]
pub(super) struct BoundedSpanExport<E> {
    inner: Arc<E>,
    bound: Bound,
    timeout: Duration,
}

impl<E> BoundedSpanExport<E> {
    pub(super) fn new(inner: E, bound: Bound, timeout: Duration) -> Self {
        Self { inner: Arc::new(inner), bound, timeout }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for BoundedSpanExport<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match &self.bound {
            Bound::Runtime(runtime) => {
                let inner = Arc::clone(&self.inner);
                on_runtime(runtime, self.timeout, async move { inner.export(batch).await }).await?
            }
            Bound::Blocking(deadline) => {
                let _set = deadline.set(self.timeout);
                self.inner.export(batch).await
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // The SDK sets it once, as the provider is built, before any export
        // could hold a second reference (an export's task ends before the
        // export returns).
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => tracing::warn!("OTLP: the span exporter's resource could not be set: an export was running"),
        }
    }
}

/// When the export in progress must be over, shared by a span exporter and
/// the HTTP client under it.
#[derive(Debug, Default)]
pub(super) struct Deadline(Mutex<Option<Instant>>);

impl Deadline {
    /// Starts an export that must end within `timeout`, until the returned
    /// guard goes.
    fn set(&self, timeout: Duration) -> DeadlineSet<'_> {
        *self.lock() = Some(Instant::now() + timeout);
        DeadlineSet(self)
    }

    /// What is left of the export in progress; `timeout` outside one.
    fn left(&self, timeout: Duration) -> Duration {
        self.lock().map_or(timeout, |end| end.saturating_duration_since(Instant::now()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends the export [`Deadline::set`] started.
struct DeadlineSet<'a>(&'a Deadline);

impl Drop for DeadlineSet<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// The span exporter's HTTP client: reqwest's blocking one, each request
/// bounded, its answer's body included, by what is left of the export's
/// [`Deadline`] (the SDK's own use of the client bounds only the wait for
/// the headers).
#[derive(Debug)]
pub(super) struct DeadlineHttpClient {
    client: reqwest::blocking::Client,
    deadline: Arc<Deadline>,
    timeout: Duration,
}

impl DeadlineHttpClient {
    pub(super) fn new(client: reqwest::blocking::Client, deadline: Arc<Deadline>, timeout: Duration) -> Self {
        Self { client, deadline, timeout }
    }

    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let left = self.deadline.left(self.timeout);
        if left.is_zero() {
            return Err(OTelSdkError::Timeout(self.timeout).into());
        }
        let answer = send_within(&self.client, reqwest::blocking::Request::try_from(request)?, left)?;
        let mut response = Response::builder().status(answer.status).body(Bytes::from(answer.body))?;
        *response.headers_mut() = answer.headers;
        Ok(response)
    }
}

// By hand: the trait is declared with `async_trait`, not a dependency here.
impl HttpClient for DeadlineHttpClient {
    fn send_bytes<'client, 'future>(
        &'client self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'future>>
    where
        'client: 'future,
        Self: 'future,
    {
        // The SDK's span-export thread polls this with a plain executor,
        // not on a tokio runtime, so blocking here is allowed.
        Box::pin(async move { self.send(request) })
    }
}

/// A collector's answer to an HTTP export.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// Empty if the collector sent none, or more than [`MAX_ANSWER`]
    /// bytes, or did not finish it in time.
    pub(super) body: Vec<u8>,
}

/// The most of a collector's answer that is read: an answer is a count and
/// a message, and whatever sends more (a proxy's page, an endless stream)
/// must not be read into memory.
const MAX_ANSWER: u64 = 64 * 1024;

/// Sends `request` and reads the answer within `timeout` as a whole: a
/// request's own timeout holds until its body is read (reqwest's async
/// client, under the blocking one, enforces it), where the client's
/// restarts at each read. An error only if no answer came in time.
pub(super) fn send_within(
    client: &reqwest::blocking::Client,
    mut request: reqwest::blocking::Request,
    timeout: Duration,
) -> reqwest::Result<Answer> {
    *request.timeout_mut() = Some(timeout);
    let mut response = client.execute(request)?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    Ok(Answer { status, headers, body: read_body(response) })
}

/// The body, or nothing if it is too long or cannot be read to its end: the
/// status alone says whether the export was taken, the body only whether
/// some of it was turned down.
fn read_body(response: impl Read) -> Vec<u8> {
    let mut body = Vec::new();
    match response.take(MAX_ANSWER + 1).read_to_end(&mut body) {
        Ok(_) if body.len() as u64 <= MAX_ANSWER => body,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_bounds_only_the_export_that_set_it() {
        let deadline = Deadline::default();
        let timeout = Duration::from_secs(60);
        assert_eq!(deadline.left(timeout), timeout, "outside an export");
        {
            let _set = deadline.set(Duration::from_millis(20));
            assert!(deadline.left(timeout) <= Duration::from_millis(20));
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(deadline.left(timeout), Duration::ZERO);
        }
        assert_eq!(deadline.left(timeout), timeout, "the export is over");
    }

    #[test]
    fn a_body_too_long_or_cut_short_is_read_as_none() {
        assert_eq!(read_body(&b"answer"[..]), b"answer");
        assert_eq!(read_body(&vec![1; MAX_ANSWER as usize][..]).len(), MAX_ANSWER as usize);
        assert!(read_body(&vec![1; MAX_ANSWER as usize + 1][..]).is_empty());
        struct CutShort;
        impl Read for CutShort {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::TimedOut.into())
            }
        }
        assert!(read_body(CutShort).is_empty());
    }

    /// A task on a runtime that has stopped is an error, not a hang or a
    /// panic: the pipeline stops its runtime while an export may run.
    #[test]
    fn an_export_on_a_stopped_runtime_fails() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let handle = runtime.handle().clone();
        let never = on_runtime(&handle, Duration::from_secs(60), std::future::pending::<()>());
        runtime.shutdown_background();
        assert!(matches!(futures_block_on(never), Err(OTelSdkError::InternalFailure(_))));
        let timed_out = {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let result =
                futures_block_on(on_runtime(runtime.handle(), Duration::from_millis(10), std::future::pending::<()>()));
            runtime.shutdown_background();
            result
        };
        assert!(matches!(timed_out, Err(OTelSdkError::Timeout(_))));
    }

    /// What the SDK's export threads do: poll on a plain thread, no runtime.
    fn futures_block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let thread = std::thread::current();
        let waker = std::task::Waker::from(Arc::new(Unpark(thread)));
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    struct Unpark(std::thread::Thread);

    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
}
