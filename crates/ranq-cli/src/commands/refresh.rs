//! `ranq refresh`: enqueue refresh jobs now, and with `--wait`, watch them land.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ranq_cache::Cache;
use ranq_core::job::Reason;
use ranq_core::{GroupId, RefreshJob, Version};
use ranq_queue::{Queue, QueueOptions};

use crate::cli::RefreshArgs;
use crate::context::{Context, UsageError};

/// How often `--wait` looks at the cached versions.
const WAIT_POLL: Duration = Duration::from_millis(100);

pub async fn refresh(ctx: &Context, args: &RefreshArgs) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let groups = target_groups(ctx, args).await?;
    // Everything read from the source after this instant is newer than the request.
    let requested: Version = ranq_core::fence::version_of(chrono::Utc::now());
    let queue = Queue::new(cache.connection(), cache.keys(), &QueueOptions::default());
    let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect();
    let p = &ctx.settings.producer;
    // A manual refresh waits for room as long as the user is prepared to wait for the result.
    let report = queue.enqueue(&jobs, p.enqueue_chunk, p.max_backlog, args.timeout).await?;
    if report.deferred > 0 {
        anyhow::bail!(
            "enqueued {} of {} groups; the queue stayed full for {} (are workers running? see `ranq status`)",
            report.pushed,
            groups.len(),
            humantime::format_duration(args.timeout)
        );
    }
    eprintln!("enqueued {} refresh jobs", report.pushed);
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let missing = wait_for_versions(&cache, &groups, requested, args.timeout).await?;
    if missing.is_empty() {
        let took = started.elapsed();
        eprintln!("all {} groups refreshed in {:.1}s", groups.len(), took.as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    let shown: Vec<String> = missing.iter().take(20).map(ToString::to_string).collect();
    let more = missing.len().saturating_sub(shown.len());
    anyhow::bail!(
        "timed out after {}: {} of {} groups not refreshed yet: {}{} (are workers running? see `ranq status`)",
        humantime::format_duration(args.timeout),
        missing.len(),
        groups.len(),
        shown.join(" "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

/// The groups named on the command line and in `--from-file` (`-` is stdin), or every group
/// with `--all`. A bad id anywhere is a usage error before anything is enqueued.
async fn target_groups(ctx: &Context, args: &RefreshArgs) -> anyhow::Result<Vec<GroupId>> {
    if args.all {
        let source = ctx.reading_source(1).await?;
        let groups = source.group_ids().await?;
        source.close().await;
        return Ok(groups);
    }
    // Each id with where it came from, for the error that names a bad one.
    let mut raw: Vec<(String, String)> = Vec::new();
    let mut stdin_taken = false;
    let mut stdin_once = |raw: &mut Vec<(String, String)>| -> anyhow::Result<()> {
        if !std::mem::replace(&mut stdin_taken, true) {
            raw.extend(read_ids("stdin", std::io::stdin().lock())?);
        }
        Ok(())
    };
    for arg in &args.groups {
        if arg == "-" {
            stdin_once(&mut raw)?;
        } else {
            raw.push((arg.clone(), "the command line".into()));
        }
    }
    match &args.from_file {
        Some(path) if path.as_os_str() == "-" => stdin_once(&mut raw)?,
        Some(path) => {
            let file =
                std::fs::File::open(path).map_err(|e| UsageError(format!("--from-file {}: {e}", path.display())))?;
            raw.extend(read_ids(&path.display().to_string(), std::io::BufReader::new(file))?);
        }
        None => {}
    }
    let mut groups = Vec::with_capacity(raw.len());
    for (id, from) in raw {
        groups.push(ranq_core::parse_group_id(&id).map_err(|e| UsageError(format!("{e} ({from})")))?);
    }
    if groups.is_empty() {
        return Err(UsageError("no group ids given: name groups, pass --from-file PATH, or use --all".into()).into());
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// Ids separated by whitespace or commas, each with its line for error messages.
fn read_ids(from: &str, reader: impl BufRead) -> anyhow::Result<Vec<(String, String)>> {
    let mut ids = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("cannot read group ids from {from}: {e}"))?;
        let at = format!("{from} line {}", n + 1);
        ids.extend(line.split([' ', '\t', ',']).filter(|s| !s.is_empty()).map(|s| (s.to_owned(), at.clone())));
    }
    Ok(ids)
}

/// Waits until every group's fenced version (snapshot or tombstone) is newer than `requested`;
/// returns the groups still waiting when `timeout` ran out.
async fn wait_for_versions(
    cache: &Cache,
    groups: &[GroupId],
    requested: Version,
    timeout: Duration,
) -> anyhow::Result<Vec<GroupId>> {
    let bar = ProgressBar::new(groups.len() as u64).with_style(
        ProgressStyle::with_template("refreshing {bar:30} {pos}/{len} groups  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut waiting: Vec<GroupId> = groups.to_vec();
    loop {
        let mut still = Vec::with_capacity(waiting.len());
        for chunk in waiting.chunks(1_000) {
            let versions = cache.fence_versions(chunk).await?;
            still.extend(chunk.iter().zip(versions).filter(|(_, v)| v.is_none_or(|v| v <= requested)).map(|(g, _)| *g));
        }
        waiting = still;
        bar.set_position((groups.len() - waiting.len()) as u64);
        if waiting.is_empty() || started.elapsed() >= timeout {
            bar.finish_and_clear();
            return Ok(waiting);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}
