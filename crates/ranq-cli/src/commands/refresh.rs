//! `ranq refresh`: enqueue refresh jobs now, and with `--wait`, watch them land.

use std::io::BufRead;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use ranq_core::{GroupId, Reason, RefreshJob, Version};
use ranq_queue::Backpressure;
use ranq_runtime::UsageError;

use crate::cli::RefreshArgs;
use crate::context::Context;

pub async fn refresh(ctx: &Context, args: &RefreshArgs) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let groups = target_groups(ctx, args).await?;
    // Everything read from the source after this instant is newer than the request.
    let requested: Version = ranq_core::fence::version_of(chrono::Utc::now());
    let queue = ctx.queue(&cache);
    let jobs: Vec<RefreshJob> = groups.iter().map(|&g| RefreshJob::new(g, Reason::Manual)).collect();
    // A manual refresh waits for room as long as the user is prepared to wait for the result.
    let pressure = Backpressure::of(&ctx.settings.producer).waiting(args.timeout);
    let report = queue.enqueue(&jobs, &pressure).await?;
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
    let bar = ranq_runtime::progress::bar("refreshing", groups.len() as u64, "groups");
    let on_progress = |done: usize| {
        bar.set_position(done as u64);
        ControlFlow::Continue(())
    };
    let missing = cache.wait_until_refreshed(&groups, requested, args.timeout, on_progress).await;
    bar.finish_and_clear();
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
