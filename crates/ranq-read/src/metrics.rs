//! Prometheus metrics of the read API: `ranq_reads_total{status}`, `ranq_cache_age_seconds`,
//! `ranq_read_refreshes_total{outcome}`, `ranq_read_miss_waits_total{outcome}`,
//! `ranq_read_redis_unanswered_total{answer}`, `ranq_read_refused_total{reason}` and
//! `ranq_read_copy_bytes`.
//!
//! The recorder is owned by the server rather than installed globally, so several servers (in
//! tests, or `ranq up`) each count their own requests.

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, with_local_recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use ranq_core::Freshness;
use ranq_core::metrics::{
    CACHE_AGE_SECONDS, READ_COPY_BYTES, READ_MISS_WAITS_TOTAL, READ_REFRESHES_TOTAL, READ_REFUSED_TOTAL,
    READ_UNANSWERED_TOTAL, READS_TOTAL, help,
};

/// Age buckets from 100 ms to an hour: they span the default `stale_after` (90 s) and `max_age`
/// (10 min).
const AGE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

pub struct ReadMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Registered once: looking a labelled series up on every read costs more than the read.
    reads: [Counter; 3],
    age: Histogram,
    /// MISSes that waited (`read.miss_wait`) for a refresh: [served in time, still missing].
    waits: [Counter; 2],
    /// Reads Redis did not answer: [served from the last copy, 503].
    unanswered: [Counter; 2],
    /// Requests refused, by [`Refused`].
    refused: [Counter; 3],
    copy_bytes: Gauge,
}

/// Why a request was refused; set on the refusal's response (an extension), counted on its way
/// out, so the guards need no access to the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Overloaded = 0,
    RateLimited = 1,
    TimedOut = 2,
}

impl Refused {
    const ALL: [Self; 3] = [Self::Overloaded, Self::RateLimited, Self::TimedOut];

    fn as_str(self) -> &'static str {
        match self {
            Self::Overloaded => "overloaded",
            Self::RateLimited => "rate_limited",
            Self::TimedOut => "timed_out",
        }
    }
}

impl std::fmt::Debug for ReadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadMetrics")
    }
}

impl Default for ReadMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadMetrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(CACHE_AGE_SECONDS.into()), AGE_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metadata = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
        let reads = [Freshness::Fresh, Freshness::Stale, Freshness::Miss].map(|status| {
            let key = Key::from_parts(READS_TOTAL, vec![Label::new("status", status.as_str())]);
            recorder.register_counter(&key, &metadata)
        });
        let age = recorder.register_histogram(&Key::from_name(CACHE_AGE_SECONDS), &metadata);
        let waits = ["served", "missed"].map(|outcome| {
            let key = Key::from_parts(READ_MISS_WAITS_TOTAL, vec![Label::new("outcome", outcome)]);
            recorder.register_counter(&key, &metadata)
        });
        let unanswered = ["copy", "unavailable"].map(|answer| {
            let key = Key::from_parts(READ_UNANSWERED_TOTAL, vec![Label::new("answer", answer)]);
            recorder.register_counter(&key, &metadata)
        });
        let refused = Refused::ALL.map(|reason| {
            let key = Key::from_parts(READ_REFUSED_TOTAL, vec![Label::new("reason", reason.as_str())]);
            recorder.register_counter(&key, &metadata)
        });
        let copy_bytes = recorder.register_gauge(&Key::from_name(READ_COPY_BYTES), &metadata);
        with_local_recorder(&recorder, || {
            for name in
                [READS_TOTAL, READ_REFRESHES_TOTAL, READ_MISS_WAITS_TOTAL, READ_UNANSWERED_TOTAL, READ_REFUSED_TOTAL]
            {
                metrics::describe_counter!(name, help(name));
            }
            metrics::describe_histogram!(CACHE_AGE_SECONDS, help(CACHE_AGE_SECONDS));
            metrics::describe_gauge!(READ_COPY_BYTES, help(READ_COPY_BYTES));
        });
        Self { recorder, handle, reads, age, waits, unanswered, refused, copy_bytes }
    }

    /// Records a refused request.
    pub(crate) fn record_refused(&self, reason: Refused) {
        self.refused[reason as usize].increment(1);
    }

    /// Sets what the in-memory copies take now.
    pub fn set_copy_bytes(&self, bytes: usize) {
        self.copy_bytes.set(bytes as f64);
    }

    /// Records one read: its status and, when a snapshot was found, its age.
    pub fn record(&self, status: Freshness, age: Option<std::time::Duration>) {
        let index = match status {
            Freshness::Fresh => 0,
            Freshness::Stale => 1,
            Freshness::Miss => 2,
        };
        self.reads[index].increment(1);
        if let Some(age) = age {
            self.age.record(age.as_secs_f64());
        }
    }

    /// Records the end of a MISS's wait for its refresh: `served` if the refresh landed in time.
    pub fn record_wait(&self, served: bool) {
        self.waits[usize::from(!served)].increment(1);
    }

    /// Records a read Redis did not answer: `from_copy` if the last in-memory copy served it.
    pub fn record_unanswered(&self, from_copy: bool) {
        self.unanswered[usize::from(!from_copy)].increment(1);
    }

    /// Records what a read's request for a refresh did.
    pub fn record_refresh(&self, asked: crate::on_miss::Asked) {
        let recorder: &dyn Recorder = &self.recorder;
        with_local_recorder(recorder, || {
            metrics::counter!(READ_REFRESHES_TOTAL, "outcome" => asked.as_str()).increment(1);
        });
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
