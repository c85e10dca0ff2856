//! The values a service exports on `/metrics`, and their Prometheus text
//! exposition, written by hand: each service has a handful of counters and
//! gauges, which does not justify a metrics registry crate. A service keeps
//! its own `Metrics` struct of these, in its `metrics.rs`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn increment(&self) {
        self.add(1);
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (a size, a timestamp, a duration).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A counter split by one label (errors by kind, requests by route). Its
/// labels must come from a small fixed set, never from a client's input.
#[derive(Debug)]
pub struct CounterVec<K = String> {
    counts: Mutex<BTreeMap<K, u64>>,
}

impl<K> Default for CounterVec<K> {
    fn default() -> Self {
        Self {
            counts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone + Display> CounterVec<K> {
    pub fn increment<Q>(&self, label: &Q)
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        self.add(label, 1);
    }

    pub fn add<Q>(&self, label: &Q, amount: u64)
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let mut counts = self.counts.lock().expect("metrics lock");
        match counts.get_mut(label) {
            Some(count) => *count += amount,
            None => {
                counts.insert(label.to_owned(), amount);
            }
        }
    }

    fn labelled_values(&self) -> Vec<(String, u64)> {
        let counts = self.counts.lock().expect("metrics lock");
        counts
            .iter()
            .map(|(label, count)| (label.to_string(), *count))
            .collect()
    }
}

#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, counter: &Counter) -> &mut Self {
        self.header(name, help, "counter");
        let _ = writeln!(self.text, "{name} {}", counter.get());
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.header(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {value}");
        self
    }

    /// A counter split by `label`, e.g. errors by `kind`.
    pub fn counter_vec<K: Ord + Clone + Display>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        counter: &CounterVec<K>,
    ) -> &mut Self {
        self.header(name, help, "counter");
        for (label_value, value) in counter.labelled_values() {
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
        let rows = Counter::default();
        rows.add(3);
        let errors = CounterVec::<String>::default();
        errors.increment("timeout");
        let mut exposition = Exposition::default();
        exposition
            .counter("rows_total", "Rows stored.", &rows)
            .counter_vec("errors_total", "Errors.", "kind", &errors);
        let text = exposition.finish();
        assert!(text.contains("# TYPE rows_total counter\nrows_total 3\n"));
        assert!(text.contains("errors_total{kind=\"timeout\"} 1\n"));
    }
}
