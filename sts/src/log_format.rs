//! The text log format's timestamp and fields, written exactly as tracing-subscriber's
//! defaults write them, only cheaper: the timestamp (RFC 3339, microseconds, UTC) without
//! `core::fmt` padding, and the values most lines carry (a string of printable ASCII that needs
//! no escaping, an integer, a boolean) as `name=value` without `Debug` formatting. Every other
//! field goes to the default visitor, which quotes and escapes as Rust's `Debug` does. On the
//! request path the defaults cost a few thousand instructions per line.
//!
//! Used for the text format without colours (`main.rs`). It must not change a byte of what a
//! line says, and must never write a string that needs escaping without escaping it (log
//! injection): the tests compare it with the defaults on such values.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// The [`FormatTime`] to give `tracing_subscriber::fmt().with_timer(…)`: the default's
/// `2026-11-23T16:18:40.132108Z`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        write!(w, "{now}")
    }
}

/// The [`FormatFields`] to give `tracing_subscriber::fmt().fmt_fields(…)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    is_empty: bool,
    result: fmt::Result,
}

/// What the direct path writes after `name=`.
enum Plain<'a> {
    /// A string `Debug` would print as `"…"` unchanged.
    Str(&'a str),
    Int(i64),
    UInt(u64),
    Bool(bool),
}

/// Whether `name=value` is written directly: not the message, not a raw identifier
/// (`r#type`), and no string that `Debug` would escape (those are the default's to write).
fn is_direct(name: &str, value: &Plain<'_>) -> bool {
    if name == "message" || name.starts_with("r#") {
        return false;
    }
    match value {
        Plain::Str(s) => s
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
        Plain::Int(_) | Plain::UInt(_) | Plain::Bool(_) => true,
    }
}

impl PlainVisitor<'_> {
    /// `name=value` without `Debug`, when the default would write the same bytes; `false`
    /// when the default must write it.
    fn write_plain(&mut self, field: &Field, value: Plain<'_>) -> bool {
        let name = field.name();
        if !is_direct(name, &value) {
            return false;
        }
        let pad = if self.is_empty { "" } else { " " };
        self.is_empty = false;
        self.result = self.write_pieces(pad, name, value);
        true
    }

    /// `{pad}{name}={value}` in pieces, without `core::fmt` for the strings.
    fn write_pieces(&mut self, pad: &str, name: &str, value: Plain<'_>) -> fmt::Result {
        let w = &mut self.writer;
        w.write_str(pad)?;
        w.write_str(name)?;
        w.write_str("=")?;
        match value {
            Plain::Str(s) => {
                w.write_str("\"")?;
                w.write_str(s)?;
                w.write_str("\"")
            }
            Plain::Int(i) => w.write_str(itoa::Buffer::new().format(i)),
            Plain::UInt(u) => w.write_str(itoa::Buffer::new().format(u)),
            Plain::Bool(b) => w.write_str(if b { "true" } else { "false" }),
        }
    }

    /// The default visitor's writing of one field, continuing this line.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        self.is_empty = false;
    }

    /// Whether to write nothing: an earlier write failed, or the field is log metadata the
    /// line's header already shows (as the default skips it, without padding).
    fn skip(&self, field: &Field) -> bool {
        self.result.is_err() || field.name().starts_with("log.")
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.skip(field) && !self.write_plain(field, Plain::Str(value)) {
            self.by_default(|d| d.record_str(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.skip(field) && !self.write_plain(field, Plain::Int(value)) {
            self.by_default(|d| d.record_i64(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.skip(field) && !self.write_plain(field, Plain::UInt(value)) {
            self.by_default(|d| d.record_u64(field, value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.skip(field) && !self.write_plain(field, Plain::Bool(value)) {
            self.by_default(|d| d.record_bool(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.skip(field) {
            self.by_default(|d| d.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.skip(field) {
            self.by_default(|d| d.record_debug(field, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn events() {
        let strange = [
            "plain-value_1.2:3/@",
            "",
            "has \"quotes\"",
            "back\\slash",
            "new\nline\r\t",
            "esc \u{1b}[31mred",
            "del \u{7f}",
            "ünïcode",
            "nul \0",
        ];
        for s in strange {
            tracing::info!(sub = s, n = -3i64, "token exchanged");
            tracing::info!(first = s, "{s}");
            tracing::warn!(message = s, other = s);
        }
        let shown = "shown";
        tracing::info!(
            profile = %shown,
            r#type = "raw",
            count = 7u64,
            ok = true,
            f = 1.5f64,
            debugged = ?Some("x"),
            big = u64::MAX,
            small = i64::MIN,
            "mixed"
        );
        tracing::info!(only = 1i64);
        // Fields the `log` crate's bridge adds are skipped, without padding, whatever their type.
        tracing::info!(log.target = "x", a = "b");
        tracing::info!(a = "b", log.line = 3u64, c = 4i64);
        tracing::info!(log.n = -1i64, log.b = true, log.d = ?1.5, log.e = 2u64, z = "z");
        tracing::info!(a = "x", b = shown, c = "y\"", d = "z");
        let e = io::Error::other("disk \"full\"");
        tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed");
        // A span's fields, formatted by the same `FormatFields`.
        let span = tracing::info_span!("span", id = 3, name = "n\"q", plain = "p");
        let _entered = span.enter();
        tracing::info!(inside = "span", "in a span");
    }

    fn render<F>(fields: F) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(fields)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The default timer's format, to the microsecond, in UTC.
    #[test]
    fn the_timestamp_is_the_defaults() {
        use tracing_subscriber::fmt::time::SystemTime as DefaultTime;
        let render = |timer: &dyn FormatTime| {
            let mut out = String::new();
            timer.format_time(&mut Writer::new(&mut out)).unwrap();
            out
        };
        // The same second (retried across a second boundary), the same shape after it.
        let (ours, theirs) = loop {
            let (a, b, c) = (
                render(&DefaultTime),
                render(&Rfc3339Micros),
                render(&DefaultTime),
            );
            if a[..19] == c[..19] {
                break (b, a);
            }
        };
        assert_eq!(ours[..19], theirs[..19], "{ours} / {theirs}");
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        let fraction = &ours[19..];
        assert!(
            fraction.starts_with('.') && fraction.ends_with('Z'),
            "{ours}"
        );
        assert!(fraction[1..7].bytes().all(|b| b.is_ascii_digit()), "{ours}");
    }

    /// The direct path takes the values most lines carry, and leaves everything that needs
    /// escaping (or is the message, or a raw identifier) to the default.
    #[test]
    fn plain_values_take_the_direct_path() {
        for (name, value, direct) in [
            ("sub", Plain::Str("user-1@example.com"), true),
            ("sub", Plain::Str(""), true),
            ("sub", Plain::Str("~ !#$%&'()*+,-./:;<=>?@[]^_`{|}"), true),
            ("n", Plain::Int(-3), true),
            ("n", Plain::UInt(3), true),
            ("ok", Plain::Bool(false), true),
            ("sub", Plain::Str("a\"b"), false),
            ("sub", Plain::Str("a\\b"), false),
            ("sub", Plain::Str("a\nb"), false),
            ("sub", Plain::Str("\u{1b}"), false),
            ("sub", Plain::Str("\u{7f}"), false),
            ("sub", Plain::Str("é"), false),
            ("message", Plain::Str("plain"), false),
            ("r#type", Plain::Str("plain"), false),
            ("r#type", Plain::Int(1), false),
        ] {
            assert_eq!(is_direct(name, &value), direct, "{name}");
        }
    }

    /// Byte for byte what the default writes, escaping included.
    #[test]
    fn writes_what_the_default_writes() {
        let default = render(tracing_subscriber::fmt::format::DefaultFields::new());
        let plain = render(PlainFields);
        assert!(default.contains(r#"sub="has \"quotes\"""#), "{default}");
        assert!(default.contains(r#"sub="esc \u{1b}[31mred""#), "{default}");
        assert!(
            default.contains(r#"token exchanged sub="plain-value_1.2:3/@" n=-3"#),
            "{default}"
        );
        assert_eq!(plain, default);
    }
}
