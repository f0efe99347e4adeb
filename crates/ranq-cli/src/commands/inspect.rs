//! A group at a time: `ranq dirty` marks groups, `ranq get` prints one as the API would.

use std::process::ExitCode;

use ranq_core::GroupId;
use ranq_read::answer::ReadOutcome;
use ranq_read::wire::MissBody;
use ranq_runtime::UsageError;

use crate::cli::{DirtyArgs, GetArgs};
use crate::context::Context;

pub async fn dirty(ctx: &Context, args: &DirtyArgs) -> anyhow::Result<ExitCode> {
    let groups = args
        .groups
        .iter()
        .map(|g| ranq_core::parse_group_id(g).map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<GroupId>, _>>()?;
    let cache = ctx.cache().await?;
    let added = cache.mark_dirty(&groups).await?;
    println!(
        "marked {} groups dirty ({added} newly); the next dirty-mode tick refreshes them (see `ranq status`)",
        groups.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints what `GET /v1/groups/{g}/top` would answer. Exit 0 when served (FRESH or STALE), 1 on
/// a MISS, so scripts can test for a cached group.
pub async fn get(ctx: &Context, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let group = ranq_core::parse_group_id(&args.group).map_err(|e| UsageError(e.to_string()))?;
    let limit = ranq_core::parse_limit(args.limit.as_deref()).map_err(|e| UsageError(e.to_string()))?;
    let cache = ctx.cache().await?;
    let policy = ctx.settings.read.freshness();
    match ranq_read::answer::read_top(&cache, &policy, group, limit).await? {
        ReadOutcome::Served { response, .. } if args.json => {
            println!("{}", serde_json::to_string(&response)?);
            Ok(ExitCode::SUCCESS)
        }
        ReadOutcome::Served { response, .. } => {
            println!(
                "group {} · {} · age {} · computed {} · version {}",
                response.group,
                response.status,
                super::human::age(response.age_ms),
                response.computed_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                response.version
            );
            if let Some(error) = &response.error {
                println!("quarantined: its refresh keeps failing, this is its last good snapshot: {error}");
            }
            println!("{:>5}  {:>20}  {:>20}", "rank", "member", "score");
            for e in &response.entries {
                println!("{:>5}  {:>20}  {:>20}", e.rank, e.member, e.score);
            }
            Ok(ExitCode::SUCCESS)
        }
        ReadOutcome::Miss { error, .. } if args.json => {
            println!("{}", serde_json::to_string(&MissBody::new(group, error))?);
            Ok(ExitCode::from(1))
        }
        ReadOutcome::Miss { error, .. } => {
            println!("group {group} · MISS · not cached, or older than read.max_age");
            if let Some(error) = error {
                println!("quarantined: its refresh keeps failing: {error}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
