//! Every Prometheus metric the fleet exports: its name, kind, labels, the role that serves it and
//! what it counts. The roles record under these names, and `docs/reference/metrics.md` is
//! generated from [`METRICS`], so the names in the docs are the names on the wire.

/// Ticks by what became of them (`outcome`: `enqueued`, `duplicate`, `missed`).
pub const TICKS_TOTAL: &str = "ranq_ticks_total";
/// Refresh jobs a producer handed to the queue.
pub const JOBS_ENQUEUED_TOTAL: &str = "ranq_jobs_enqueued_total";
/// Group refreshes by outcome (`written`, `fenced`, `deleted`, `failed`).
pub const REFRESHES_TOTAL: &str = "ranq_refreshes_total";
/// Groups per batch.
pub const REFRESH_BATCH_SIZE: &str = "ranq_refresh_batch_size";
/// Time per batch, SQL and Redis.
pub const REFRESH_SECONDS: &str = "ranq_refresh_seconds";
/// Leaderboard reads by status.
pub const READS_TOTAL: &str = "ranq_reads_total";
/// Age of the snapshot served, per read.
pub const CACHE_AGE_SECONDS: &str = "ranq_cache_age_seconds";
/// Refreshes asked for by MISS and STALE reads, by outcome.
pub const READ_REFRESHES_TOTAL: &str = "ranq_read_refreshes_total";
/// MISSes that waited for the refresh they asked for, by outcome.
pub const READ_MISS_WAITS_TOTAL: &str = "ranq_read_miss_waits_total";
/// Reads Redis did not answer, by how they were answered.
pub const READ_UNANSWERED_TOTAL: &str = "ranq_read_redis_unanswered_total";
/// Requests the read API refused, by why.
pub const READ_REFUSED_TOTAL: &str = "ranq_read_refused_total";
/// Memory the read API's in-memory copies take.
pub const READ_COPY_BYTES: &str = "ranq_read_copy_bytes";

/// One exported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDoc {
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Its label and their values, as `label="a|b"`; empty when it has none.
    pub labels: &'static str,
    /// The role whose metrics endpoint serves it: `producer`, `worker` or `serve`.
    pub from: &'static str,
    pub help: &'static str,
}

/// Every metric, in the order the reference lists them.
pub const METRICS: &[MetricDoc] = &[
    MetricDoc {
        name: TICKS_TOTAL,
        kind: "counter",
        labels: r#"outcome="enqueued|duplicate|missed""#,
        from: "producer",
        help: "Ticks by what became of them: enqueued by this leader, already claimed, or passed while nobody led.",
    },
    MetricDoc {
        name: JOBS_ENQUEUED_TOTAL,
        kind: "counter",
        labels: "",
        from: "producer",
        help: "Refresh jobs handed to the queue.",
    },
    MetricDoc {
        name: REFRESHES_TOTAL,
        kind: "counter",
        labels: r#"outcome="written|fenced|deleted|failed""#,
        from: "worker",
        help: "Group refreshes by what the fence did with them, or that failed.",
    },
    MetricDoc {
        name: REFRESH_BATCH_SIZE,
        kind: "histogram",
        labels: "",
        from: "worker",
        help: "Groups per batch (one SQL query and one Redis pipeline).",
    },
    MetricDoc {
        name: REFRESH_SECONDS,
        kind: "histogram",
        labels: "",
        from: "worker",
        help: "Time per batch, SQL and Redis.",
    },
    MetricDoc {
        name: READS_TOTAL,
        kind: "counter",
        labels: r#"status="FRESH|STALE|MISS""#,
        from: "serve",
        help: "Leaderboard reads by status (FRESH, STALE, MISS).",
    },
    MetricDoc {
        name: CACHE_AGE_SECONDS,
        kind: "histogram",
        labels: "",
        from: "serve",
        help: "Age of the snapshot served, per read.",
    },
    MetricDoc {
        name: READ_REFRESHES_TOTAL,
        kind: "counter",
        labels: r#"outcome="enqueued|recent|limited|absent|skipped""#,
        from: "serve",
        help: "Refreshes asked for by MISS and STALE reads, by outcome (enqueued, recent, limited, absent, skipped).",
    },
    MetricDoc {
        name: READ_MISS_WAITS_TOTAL,
        kind: "counter",
        labels: r#"outcome="served|missed""#,
        from: "serve",
        help: "MISSes that waited for the refresh they asked for: served in time, or still missing.",
    },
    MetricDoc {
        name: READ_UNANSWERED_TOTAL,
        kind: "counter",
        labels: r#"answer="copy|unavailable""#,
        from: "serve",
        help: "Reads that Redis did not answer (or that met a master being looked for): served from the process's last in-memory copy, or answered 503.",
    },
    MetricDoc {
        name: READ_REFUSED_TOTAL,
        kind: "counter",
        labels: r#"reason="overloaded|rate_limited|timed_out""#,
        from: "serve",
        help: "Requests answered 503 past read.max_in_flight, 429 past read.client_rate, or 503 past read.request_timeout.",
    },
    MetricDoc {
        name: READ_COPY_BYTES,
        kind: "gauge",
        labels: "",
        from: "serve",
        help: "Bytes the in-memory copies of snapshots take (bounded by read.local_max_bytes), as of the scrape.",
    },
];

/// The help text of the metric `name`.
pub fn help(name: &str) -> &'static str {
    METRICS.iter().find(|m| m.name == name).map_or("", |m| m.help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_and_helped() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert!(METRICS.iter().all(|m| m.name.starts_with("ranq_") && !m.help.is_empty()));
        assert_eq!(help(READS_TOTAL), "Leaderboard reads by status (FRESH, STALE, MISS).");
    }
}
