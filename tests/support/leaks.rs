//! The leak corpus: every request a test sends through [`post`](super::post) runs with its own
//! log subscriber at `trace` level, in both log formats the binary has (text and JSON), and
//! what it logged is searched for every credential the request carried and every token it was
//! issued. Every flow and every refusal path of the suite is therefore scanned.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Log output captured in memory.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.0.clone())
    }
}

impl LogCapture {
    /// A subscriber that logs everything, as text (the service's own field format) and as
    /// JSON, into this capture.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let text = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(sts::log_format::PlainFields)
            .with_writer(self.clone());
        let json = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(self.clone());
        tracing_subscriber::registry()
            .with(text)
            .with(json)
            .with(tracing_subscriber::filter::LevelFilter::TRACE)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics if the captured logs contain any of `secrets` (or a JWS's signature part), or
    /// private key material.
    pub fn assert_free_of(&self, secrets: &[String]) {
        assert_text_free_of(&self.text(), secrets);
    }
}

/// Panics if `text` (logs, exported spans) contains any of `secrets` (or a JWS's signature
/// part), or private key material.
pub fn assert_text_free_of(text: &str, secrets: &[String]) {
    assert!(
        !text.contains("PRIVATE KEY"),
        "private key material reached the output"
    );
    for s in secrets {
        for needle in needles(s) {
            assert!(
                !text.contains(needle),
                "a credential reached the output (sha256 {}):\n{text}",
                sts::secret::fingerprint(s.as_bytes())
            );
        }
    }
}

/// What to search for: the whole value, and for a compact JWS its signature too. Values too
/// short to be a credential (test probes like `x`) would match ordinary words and are skipped.
fn needles(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    if value.len() >= 10 {
        out.push(value);
    }
    if let Some(sig) = value
        .rsplit('.')
        .next()
        .filter(|s| s.len() >= 16 && *s != value)
    {
        out.push(sig);
    }
    out
}
