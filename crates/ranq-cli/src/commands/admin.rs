//! `ranq migrate` and `ranq seed`: preparing the source database.

use std::process::ExitCode;
use std::time::Instant;

use ranq_db::SeedOptions;
use ranq_runtime::UsageError;

use crate::cli::{MigrateArgs, SeedArgs};
use crate::context::Context;

pub async fn migrate(ctx: &Context, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let source = ctx.source(1).await?;
    source.migrate().await?;
    let url = ranq_core::redact_url(ctx.database_url()?);
    if args.with_triggers {
        source.install_change_feed().await.map_err(|e| match e {
            ranq_db::DbError::Unsupported(why) => anyhow::Error::new(UsageError(why.into())),
            e => e.into(),
        })?;
        match source.change_source().await? {
            ranq_db::ChangeSource::Notify => {
                println!("change feed installed on {url} (channel {})", ranq_db::CHANGE_FEED_CHANNEL);
            }
            _ => println!("change feed installed on {url} (outbox table ranq_outbox, drained by the producer)"),
        }
    }
    source.close().await;
    println!("migrations applied to {url}");
    Ok(ExitCode::SUCCESS)
}

pub async fn seed(ctx: &Context, args: &SeedArgs) -> anyhow::Result<ExitCode> {
    let source = ctx.source(2).await?;
    let started = Instant::now();
    let report = seed_with_progress(
        &source,
        SeedOptions { groups: args.groups, members: args.members, seed: args.seed, replace: args.replace },
    )
    .await?;
    source.close().await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {} groups × {} members ({} rows) in {secs:.1}s ({:.0} rows/s)",
        report.groups,
        args.members,
        report.rows,
        report.rows as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// Seeds with a progress bar on a terminal.
pub async fn seed_with_progress(source: &ranq_db::Source, options: SeedOptions) -> anyhow::Result<ranq_db::SeedReport> {
    let bar = ranq_runtime::progress::bar("seeding", u64::from(options.groups), "groups");
    let report = source.seed(options, &|done| bar.set_position(done)).await;
    bar.finish_and_clear();
    Ok(report?)
}
