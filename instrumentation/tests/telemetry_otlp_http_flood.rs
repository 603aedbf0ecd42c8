//! A collector that answers a metrics export with an endless body (a
//! misconfigured proxy streaming, say) is read only up to a bound: the
//! exporter lets go of the connection instead of taking the stream into
//! memory until the timeout.

#![cfg(feature = "otlp")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

/// What the collector managed to send before the exporter let go, in all.
const MOST_SENT: u64 = 64 << 20;

#[test]
fn an_endless_answer_is_read_only_up_to_a_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sent);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                // The request: enough of it to answer (the body is left unread).
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                let chunk = [b"10000\r\n".as_slice(), &[0u8; 0x10000], b"\r\n"].concat();
                while stream.write_all(&chunk).is_ok() {
                    if counted.fetch_add(chunk.len() as u64, Ordering::Relaxed) > 4 * MOST_SENT {
                        break;
                    }
                }
            });
        }
    });
    let probe = MapProbe::new("flood").sample_every(1);
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::HttpProtobuf)
        .otlp_endpoint(&endpoint)
        .otlp_timeout(Duration::from_secs(2))
        .metrics_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || probe.start(Op::Get).finish());
    guard.flush();
    drop(guard);
    // The exporter's connection is gone; what the collector sent after
    // that is what the socket buffers took.
    std::thread::sleep(Duration::from_millis(300));
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("the collector sent {} KiB before the exporter let go", sent >> 10);
    assert!(sent > 0, "no export reached the collector");
    assert!(sent < MOST_SENT, "the exporter read {} MiB of the answer", sent >> 20);
}
