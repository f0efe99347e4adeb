//! The comparison as a Markdown table: the rows a report's page shows, with a header row in the
//! page's language. The pages embed these tables as generated (`--replot … --markdown`), and a
//! test regenerates them from the reports under `docs/bench/`, so a table cannot drift from the
//! figures it claims to show.

use std::fmt::Write as _;

use super::CompareReport;
use super::workload::ReadFigures;
use crate::cli::Lang;

/// Column headings, in the order of the cells of [`table`]'s rows.
fn headings(lang: Lang) -> [&'static str; 12] {
    match lang {
        Lang::En => [
            "architecture",
            "DB queries/min",
            "Redis commands/min",
            "lock attempts/min",
            "lock conflicts/min",
            "FRESH / STALE / MISS",
            "read p50 / p99 (ms)",
            "cold reads",
            "cold p50 / p99 (ms)",
            "data age p50 / p99",
            "db/g",
            "pile",
        ],
        Lang::Ko => [
            "아키텍처",
            "DB 쿼리/분",
            "Redis 명령/분",
            "잠금 시도/분",
            "잠금 충돌/분",
            "FRESH / STALE / MISS",
            "읽기 p50 / p99 (ms)",
            "콜드 읽기",
            "콜드 p50 / p99 (ms)",
            "데이터 나이 p50 / p99",
            "db/g",
            "몰림",
        ],
    }
}

/// The architecture's name as the page's language says it.
fn name(name: &str, lang: Lang) -> &str {
    match (lang, name) {
        (Lang::Ko, "1. sharded lock") => "1. 샤딩 잠금",
        (Lang::Ko, "2. queue (ranq)") => "2. 큐 (ranq)",
        (Lang::Ko, "3a. on demand + lock") => "3a. 온디맨드 + 잠금",
        (Lang::Ko, "3b. on demand + lock + SWR") => "3b. 온디맨드 + 잠금 + SWR",
        _ => name,
    }
}

/// The report's table, header row first, one line per architecture, ending with a newline.
pub fn table(report: &CompareReport, lang: Lang) -> String {
    let heads = headings(lang);
    let mut out = String::new();
    header(&mut out, &heads);
    for a in &report.architectures {
        let f = &a.reads;
        let cells = [
            name(&a.name, lang).to_owned(),
            thousands(a.db_queries_per_minute),
            thousands(a.redis_commands_per_minute),
            thousands(a.lock_attempts_per_minute),
            thousands(a.lock_conflicts_per_minute),
            shares(f),
            pair(f.latency_p50_ms, f.latency_p99_ms),
            thousands(f.cold_reads as f64),
            cold(f),
            ages(f),
            optional(a.max_concurrent_db_per_group),
            optional(a.max_readers_piled_on_a_miss),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A `--db-latency` sweep's table: per latency, each architecture's database load, what readers
/// were served, the cold reads' latency, the pile on one group, and the age of what was served.
pub fn sweep_table(sweep: &[CompareReport], lang: Lang) -> String {
    let heads = match lang {
        Lang::En => [
            "DB latency",
            "architecture",
            "DB queries/min",
            "FRESH / STALE / MISS",
            "cold reads",
            "cold p50 / p99 (ms)",
            "read p99 (ms)",
            "pile",
            "data age p50 / p99",
        ],
        Lang::Ko => [
            "DB 지연",
            "아키텍처",
            "DB 쿼리/분",
            "FRESH / STALE / MISS",
            "콜드 읽기",
            "콜드 p50 / p99 (ms)",
            "읽기 p99 (ms)",
            "몰림",
            "데이터 나이 p50 / p99",
        ],
    };
    let mut out = String::new();
    header(&mut out, &heads);
    for report in sweep {
        for a in &report.architectures {
            let f = &a.reads;
            let cells = [
                millis(report.db_latency_ms),
                name(&a.name, lang).to_owned(),
                thousands(a.db_queries_per_minute),
                shares(f),
                thousands(f.cold_reads as f64),
                cold(f),
                format!("{:.2}", f.latency_p99_ms),
                optional(a.max_readers_piled_on_a_miss),
                ages(f),
            ];
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out
}

/// A latency in milliseconds as people write it: `10 ms`, `0.5 ms`.
pub fn millis(ms: f64) -> String {
    if ms.fract() == 0.0 { format!("{ms:.0} ms") } else { format!("{ms:.1} ms") }
}

fn header(out: &mut String, heads: &[&str]) {
    let _ = writeln!(out, "| {} |", heads.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(heads.len()));
}

fn shares(f: &ReadFigures) -> String {
    format!("{:.1} % / {:.1} % / {:.1} %", f.fresh_share * 100.0, f.stale_share * 100.0, f.miss_share * 100.0)
}

fn pair(p50: f64, p99: f64) -> String {
    format!("{p50:.2} / {p99:.2}")
}

/// The cold reads' latency, or a dash when there were none.
fn cold(f: &ReadFigures) -> String {
    if f.cold_reads == 0 { "–".to_owned() } else { pair(f.cold_latency_p50_ms, f.cold_latency_p99_ms) }
}

fn ages(f: &ReadFigures) -> String {
    format!("{:.1} s / {:.1} s", f.seen_age_p50_ms as f64 / 1_000.0, f.seen_age_p99_ms as f64 / 1_000.0)
}

/// A figure the bench could not observe for this architecture is a dash.
fn optional(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// `v` rounded to a whole number, with a comma between thousands (`253,835`).
fn thousands(v: f64) -> String {
    indicatif::HumanCount(v.max(0.0).round() as u64).to_string()
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(253_835.2), "253,835");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
