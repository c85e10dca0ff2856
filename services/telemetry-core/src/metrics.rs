//! Prometheus text exposition, written by hand: each service has a handful
//! of counters, which does not justify a metrics registry.

use std::fmt::Write;

#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.header(name, help, "counter");
        let _ = writeln!(self.text, "{name} {value}");
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.header(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {value}");
        self
    }

    /// A counter split by one label, e.g. errors by `kind`.
    pub fn labelled_counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> &mut Self {
        self.header(name, help, "counter");
        for (label_value, value) in values {
            let _ = writeln!(self.text, "{name}{{{label}=\"{label_value}\"}} {value}");
        }
        self
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let mut exposition = Exposition::default();
        exposition
            .counter("rows_total", "Rows stored.", 3)
            .labelled_counter("errors_total", "Errors.", "kind", [("timeout", 1)]);
        let text = exposition.finish();
        assert!(text.contains("# TYPE rows_total counter\nrows_total 3\n"));
        assert!(text.contains("errors_total{kind=\"timeout\"} 1\n"));
    }
}
