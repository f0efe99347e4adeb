//! The web board in headless Chromium against a real fleet (producer, worker, serve on
//! Postgres): the board shows a group FRESH with the SQL truth's top rows, and a score change in
//! SQL as the new order with each member's movement; when its refreshes stop it turns STALE by
//! itself, without a reload; `/ops` shows the leader and the queue. Screenshots
//! of both pages land in `target/web/` (docs/web-board.png is one of them).

use std::path::PathBuf;
use std::time::Duration;

use ranq_core::Entry;
use ranq_tests::{Browser, Dialect, Proc, TestEnv, eventually, execute, free_port, truth};
use serde_json::Value;

const GROUPS: u64 = 30;
const GROUP: i64 = 7;

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from)
        .join("web")
}

/// The board's rows as the page shows them.
async fn rows(browser: &Browser) -> Vec<Entry> {
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#board tbody tr[data-member]')].map(tr => ({
                rank: Number(tr.cells[0].textContent.trim()),
                member: Number(tr.dataset.member),
                score: Number(tr.querySelector('[data-score]').dataset.score),
            }));",
        )
        .await;
    serde_json::from_value(rows).expect("rows of rank, member and score")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_turns_stale_by_itself_when_refreshes_stop_and_ops_shows_the_fleet() {
    let env = TestEnv::new(Dialect::Postgres).await;
    env.seed(GROUPS as u32, 150).await;
    let sql = env.sql().await;
    let base = format!("http://127.0.0.1:{}", free_port());
    // The operations page is on the admin listener.
    let admin = format!("http://127.0.0.1:{}", free_port());
    let _producer = Proc::spawn("producer", {
        let mut cmd = env.ranq();
        cmd.args(["producer", "--schedule", "* * * * * *", "--mode", "all"]);
        cmd
    });
    let mut worker = Proc::spawn("worker", {
        let mut cmd = env.ranq();
        cmd.arg("worker");
        cmd
    });
    let _serve = Proc::spawn("serve", {
        let mut cmd = env.ranq();
        cmd.args(["serve", "--listen", base.trim_start_matches("http://")])
            .args(["--admin-listen", admin.trim_start_matches("http://")])
            .env("RANQ_READ__STALE_AFTER", "10s");
        cmd
    });
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the group is served FRESH", || async {
        let response = http.get(format!("{base}/v1/groups/{GROUP}/top")).send().await.ok()?;
        (response.headers().get("x-ranq-status")? == "FRESH").then_some(())
    })
    .await;

    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{base}/?group={GROUP}")).await;
    browser.wait_for_text("#badge", "FRESH", Duration::from_secs(15)).await;
    let expected = truth(&sql, GROUP).await;
    assert_eq!(expected.len(), 100, "150 members: a full top 100");
    assert_eq!(rows(&browser).await, expected, "the board shows the SQL truth's top 100, in order");
    // Anything a reload would wipe out.
    browser.eval("window.ranqTestMarker = 'no reload'; return null;").await;

    // A score changes in SQL: the next refresh moves the member up, and the board shows the new
    // order with the movement, by itself.
    let climber = expected[9].member;
    execute(&sql,
        &format!("UPDATE ranq_scores SET score = 1000000, updated_at = now() WHERE group_id = {GROUP} AND member_id = {climber}"),
    )
    .await;
    let expected = truth(&sql, GROUP).await;
    assert_eq!(expected[0].member, climber);
    eventually(Duration::from_secs(30), "the board shows the new order", || async {
        (rows(&browser).await == expected).then_some(())
    })
    .await;
    let moves = browser
        .eval(
            "return [...document.querySelectorAll('#board tbody tr')].slice(0, 11).map(tr => tr.cells[3].textContent);",
        )
        .await;
    let moves: Vec<String> = serde_json::from_value(moves).unwrap();
    assert_eq!(moves[0], "▲9up 9", "the climber's movement, and its words for screen readers");
    assert!(moves[1..10].iter().all(|m| m == "▼1down 1"), "{moves:?}");
    assert_eq!(moves[10], "–unchanged", "{moves:?}");
    browser.wait_for_text("#badge", "FRESH", Duration::from_secs(15)).await;
    browser.screenshot(&screenshots().join("board-fresh.png")).await;

    // The refreshes stop: the snapshot ages past stale_after (10 s) and the page says so by itself.
    assert!(worker.terminate(Duration::from_secs(30)).success());
    browser.wait_for_text("#badge", "STALE", Duration::from_secs(30)).await;
    assert_eq!(browser.eval("return window.ranqTestMarker ?? null;").await, "no reload", "the page was reloaded");
    let updating = browser.eval("return !document.querySelector('#updating').hidden;").await;
    assert_eq!(updating, Value::Bool(true), "a STALE board says it is updating");
    assert_eq!(rows(&browser).await, expected, "a STALE board keeps showing its entries");
    assert_eq!(
        browser.text("#board tbody tr .move").await.as_deref(),
        Some("▲9"),
        "refreshes that change nothing keep the movement"
    );
    browser.screenshot(&screenshots().join("board-stale.png")).await;

    // /ops: the producer still leads and ticks every second; with no worker, every group waits
    // in the queue, exactly once each (a group never has two refreshes pending).
    let leader = env.cache().await.ledger().leader().await.unwrap().expect("the producer holds the lease");
    browser.goto(&format!("{admin}/ops")).await;
    browser.wait_for_text("#leader", &leader.id, Duration::from_secs(15)).await;
    browser.wait_for_text("#queue-pending", &GROUPS.to_string(), Duration::from_secs(30)).await;
    browser.wait_for_text("#queue-running", "0", Duration::from_secs(15)).await;
    browser.wait_for_text("#queue-dead", "0", Duration::from_secs(5)).await;
    browser.wait_for_text("#groups-cached", &GROUPS.to_string(), Duration::from_secs(5)).await;
    browser.resize(1280, 1250).await;
    browser.screenshot(&screenshots().join("ops.png")).await;
    browser.close().await;

    // On a phone: the same board, one column.
    let phone = Browser::phone().await;
    phone.goto(&format!("{base}/?group={GROUP}")).await;
    phone.wait_for_text("#badge", "STALE", Duration::from_secs(15)).await;
    let overflow = phone.eval("return document.documentElement.scrollWidth - window.innerWidth;").await;
    assert!(overflow.as_i64().is_some_and(|px| px <= 0), "the page scrolls sideways on a phone by {overflow} px");
    phone.screenshot(&screenshots().join("board-phone.png")).await;
    phone.close().await;
    env.cleanup().await;
}
