//! Building the responses the handlers share.

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message;

/// A request that cannot be answered as asked: a status and why.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl std::fmt::Display) -> Failure {
        Failure { status, message: message.to_string() }
    }

    /// A 500 that says `what` failed, and logs why: the cause (an I/O error
    /// naming a temporary file's path, a panic's message) is for the
    /// operator's log, not for whoever can reach the endpoint.
    pub(crate) fn internal(what: &str, cause: impl std::fmt::Display) -> Failure {
        tracing::error!(error = %cause, "/debug/pprof: {what}");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format_args!("{what} (the cause is in the server's log)"))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

/// Runs `work` on tokio's blocking pool, off the runtime's workers: the
/// encoding, compressing and drawing of profiles, milliseconds each, that
/// would otherwise hold up every other request on a small runtime.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work).await.map_err(|err| Failure::internal("building the answer failed", err))
}

/// `status` with a one-line plain-text message.
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (GO_PPROF_ERROR.0, GO_PPROF_ERROR.1)];
    (status, headers, format!("{message}\n")).into_response()
}

/// Marks a plain-text error as the pprof endpoint's own: `go tool pprof`
/// prints such an error's body (`unknown parameter "second" (did you mean
/// seconds?); ...`), and of
/// any other only the status line, as Go's `net/http/pprof` marks its errors.
pub(crate) const GO_PPROF_ERROR: (HeaderName, &str) = (HeaderName::from_static("x-go-pprof"), "1");

/// A plain-text or other textual body with its content type.
pub(crate) fn body(content_type: &'static str, body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

/// An SVG image.
pub(crate) fn svg(svg: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// A gzipped `profile.proto` download, as `go tool pprof` fetches it.
pub(crate) fn profile(profile: &pprof::protos::Profile, filename: &str) -> Response {
    match gzip(&profile.encode_to_vec()) {
        Ok(bytes) => download(bytes, filename),
        Err(err) => Failure::internal("could not compress the profile", err).into_response(),
    }
}

/// What a `HEAD` of a [`profile`] download gets: its headers.
pub(crate) fn profile_head(filename: &str) -> Response {
    download(Body::new(UnknownLength), filename)
}

fn download(bytes: impl Into<Body>, filename: &str) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [(header::CONTENT_TYPE, "application/octet-stream".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        bytes.into(),
    )
        .into_response()
}

/// The headers a `GET` of `content_type` gets, for a `HEAD` that does not
/// run the profile: no `Content-Length` (see [`UnknownLength`]).
pub(crate) fn head(content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], Body::new(UnknownLength)).into_response()
}

/// The body of a `HEAD` answer: it ends at once, but does not say it is
/// empty. A known length, even 0, would be sent as `Content-Length`, which
/// in a `HEAD` answer must be what the `GET` would send (RFC 9110, 8.6), and
/// that is not known without profiling; an unknown one sends none.
struct UnknownLength;

impl http_body::Body for UnknownLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(None)
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// A flamegraph of folded stacks (`frame;frame count` lines), or, when there
/// are none, a small SVG saying so (inferno refuses empty input).
pub(crate) fn flamegraph<'a>(
    title: &str,
    count_name: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u8>, String> {
    let mut lines = lines.into_iter().peekable();
    if lines.peek().is_none() {
        return Ok(empty_svg(title));
    }
    let mut options = pprof::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = count_name.to_owned();
    let mut out = Vec::new();
    pprof::flamegraph::from_lines(&mut options, lines, &mut out).map_err(|err| err.to_string())?;
    Ok(without_doctype(out))
}

/// inferno's SVG without its `<!DOCTYPE svg PUBLIC ...>`: browsers need none
/// (SVG 2 has none), and strict XML parsers refuse a DTD unless told to
/// accept one (roxmltree, Go's encoding/xml in strict mode), which would make
/// the flamegraph unreadable to scripts that post-process it.
fn without_doctype(mut svg: Vec<u8>) -> Vec<u8> {
    const OPEN: &[u8] = b"<!DOCTYPE";
    if let Some(start) = svg.windows(OPEN.len()).position(|w| w == OPEN)
        && let Some(len) = svg[start..].iter().position(|&b| b == b'>')
    {
        let end = start + len + 1;
        // The line the declaration stood on goes with it.
        let end = if svg.get(end) == Some(&b'\n') { end + 1 } else { end };
        svg.drain(start..end);
    }
    svg
}

/// The SVG for a window that recorded nothing.
fn empty_svg(title: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\
         <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">\
         no samples: nothing was recorded in the window</text></svg>\n",
        xml_escape(title)
    )
    .into_bytes()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An internal error's cause (here a temporary file's path) goes to the
    /// log, and the client gets only what failed.
    #[test]
    fn an_internal_error_logs_its_cause_and_answers_without_it() {
        #[derive(Clone, Default)]
        struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let cause = "No such file or directory at path \"/tmp/.tmpAbC\"";
        let response = tracing::subscriber::with_default(subscriber, || {
            Failure::internal("profiling failed", cause).into_response()
        });
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_text(response);
        assert_eq!(body, "profiling failed (the cause is in the server's log)\n");
        let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains("ERROR") && logged.contains("/tmp/.tmpAbC") && logged.contains("profiling failed"),
            "{logged}"
        );
    }

    /// A response's whole body, as text.
    fn body_text(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = runtime.block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_flamegraph_parses_as_xml_without_a_dtd() {
        let svg = flamegraph("t", "samples", ["main;work 3", "main;idle 1"]).unwrap();
        let text = String::from_utf8(svg).unwrap();
        assert!(!text.contains("<!DOCTYPE"), "{}", &text[..200]);
        let doc = roxmltree::Document::parse(&text).expect("strict XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.contains("work"))));
    }

    #[test]
    fn only_the_doctype_goes() {
        let svg =
            b"<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x.dtd\">\n<svg/>\n".to_vec();
        assert_eq!(without_doctype(svg), b"<?xml version=\"1.0\"?>\n<svg/>\n");
        assert_eq!(without_doctype(b"<svg/>".to_vec()), b"<svg/>");
    }
}
