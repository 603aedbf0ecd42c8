//! A default subscriber set for a scope only (`with_default`) is not a
//! global one: `install()` inside it sets the global default. (tracing's own
//! `has_been_set` counts scoped defaults too, so `install` asks on a thread
//! of its own.) A binary of its own: the global default is process-wide.

use snapview_instrument::Telemetry;

#[test]
fn a_scoped_default_does_not_stop_install() {
    let scoped = tracing_subscriber::registry();
    let guard = tracing::subscriber::with_default(scoped, || Telemetry::builder().fmt(false).install());
    let _guard = guard.expect("no global default was set");
    let global = std::thread::spawn(|| {
        tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>())
    });
    assert!(global.join().unwrap(), "the pipeline is the global default");
}
