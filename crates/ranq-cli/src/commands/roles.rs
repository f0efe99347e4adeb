//! The long-running roles: `ranq producer`, `ranq worker`, `ranq serve`. Each stops taking work on
//! SIGTERM/SIGINT, drains within `shutdown_timeout`, and exits 0.

use std::process::ExitCode;

use ranq_runtime::Shutdown;

use ranq_runtime::UsageError;

use crate::context::Context;

pub fn shutdown_on_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    shutdown
}

/// Starts the Prometheus endpoint when `metrics_listen` is set.
fn serve_metrics(ctx: &Context) -> anyhow::Result<()> {
    let Some(listen) = &ctx.settings.metrics_listen else { return Ok(()) };
    let addr = listen
        .parse()
        .map_err(|_| UsageError(format!("metrics_listen {listen:?} is not an address like 127.0.0.1:9108")))?;
    ranq_runtime::telemetry::serve_metrics(addr).map_err(anyhow::Error::msg)?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(())
}

pub async fn producer(ctx: &Context) -> anyhow::Result<ExitCode> {
    serve_metrics(ctx)?;
    let source = ctx.reading_source(2).await?;
    let cache = ctx.cache().await?;
    ranq_producer::run(&ctx.settings, source.clone(), cache, shutdown_on_signals()).await?;
    source.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(ctx: &Context) -> anyhow::Result<ExitCode> {
    serve_metrics(ctx)?;
    let source = ctx.reading_source(ctx.settings.worker.db_pool).await?;
    let cache = ctx.cache().await?;
    ranq_worker::run(&ctx.settings, source.clone(), cache, shutdown_on_signals()).await?;
    source.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(ctx: &Context) -> anyhow::Result<ExitCode> {
    let cache = ctx.cache().await?;
    let server = ranq_read::Server::bind(&ctx.settings, cache).await?;
    let (addr, admin) = (server.local_addr()?, server.admin_addr()?);
    tracing::info!(%addr, "read API listening on http://{addr}");
    tracing::info!(%admin, "admin listener (operations page, /v1/status, /metrics) on http://{admin}");
    server.run_until(shutdown_on_signals()).await?;
    tracing::info!("read API stopped");
    Ok(ExitCode::SUCCESS)
}
