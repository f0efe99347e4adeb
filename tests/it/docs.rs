//! The docs render as they are written and show what was measured:
//!
//! - every Markdown table in the repository is a GitHub-flavoured table — a header row, a
//!   delimiter row, and as many cells in every row as in the header — since a row without a
//!   header renders as a line of pipes and a short row silently loses its last columns;
//! - every measured table marked `<!-- bench-table REPORT -->` is exactly what `ranq-bench compare
//!   --replot REPORT --markdown -` generates from the JSON report beside the page, in the page's
//!   language, so a table cannot drift from its figures.
//!
//! `RANQ_WRITE_DOCS=1 cargo test -p ranq-tests --test it docs` rewrites the measured tables.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{Event, Options, Parser, Tag};
use ranq_tests::bench_bin;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The repository's own Markdown files (vendored crates' pages are kept as their authors wrote
/// them).
fn markdown_files() -> Vec<String> {
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "*.md"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|f| !f.starts_with("vendor/") || *f == "vendor/README.md")
        .map(str::to_owned)
        .collect();
    assert!(files.iter().any(|f| f == "README.md"), "git ls-files found no README.md: {files:?}");
    files
}

/// The cells a GitHub-flavoured table row has: split at unescaped pipes (inside code spans too,
/// as GitHub does), the outer pipes optional.
fn cells(row: &str) -> usize {
    let row = row.trim();
    let mut pipes = Vec::new();
    let mut escaped = false;
    for (at, c) in row.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            pipes.push(at);
        }
    }
    let leading = pipes.first() == Some(&0);
    let trailing = row.len() > 1 && pipes.last() == Some(&(row.len() - 1));
    pipes.len() + 1 - usize::from(leading) - usize::from(trailing)
}

/// What is wrong with the tables of one Markdown text, a line each.
fn table_problems(file: &str, text: &str) -> Vec<String> {
    let mut tables: Vec<Range<usize>> = Vec::new();
    let mut verbatim: Vec<Range<usize>> = Vec::new();
    for (event, range) in Parser::new_ext(text, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Table(_)) => tables.push(range),
            Event::Start(Tag::CodeBlock(_) | Tag::HtmlBlock) => verbatim.push(range),
            _ => {}
        }
    }
    let line_no = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut problems = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        let inside = |ranges: &[Range<usize>]| ranges.iter().any(|r| r.contains(&at));
        if line.trim_start().starts_with('|') && !inside(&verbatim) && !inside(&tables) {
            problems
                .push(format!("{file}:{}: a table row outside any table (is its header row missing?)", line_no(at)));
        }
    }
    for table in &tables {
        let rows: Vec<(usize, &str)> = text[table.clone()]
            .split_inclusive('\n')
            .scan(table.start, |at, line| {
                let start = *at;
                *at += line.len();
                Some((start, line))
            })
            .filter(|(_, line)| !line.trim().is_empty())
            .collect();
        let header = cells(rows[0].1);
        for &(at, row) in &rows[1..] {
            let n = cells(row);
            if n != header {
                problems.push(format!("{file}:{}: {n} cells in a table whose header has {header}", line_no(at)));
            }
        }
    }
    problems
}

#[test]
fn every_markdown_table_has_a_header_and_rows_as_wide_as_it() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        problems.extend(table_problems(&file, &text));
    }
    assert!(problems.is_empty(), "tables that do not render as written:\n{}", problems.join("\n"));
}

#[test]
fn the_table_check_finds_what_it_is_for() {
    let good = "| a | b |\n|---|---|\n| 1 | `x \\| y` |\n\n```text\n| not a table |\n```\n";
    assert_eq!(table_problems("good.md", good), Vec::<String>::new());
    let headless = "text\n\n|---|---|\n| 1 | 2 |\n";
    assert_eq!(table_problems("headless.md", headless).len(), 2, "{:?}", table_problems("headless.md", headless));
    let short = "| a | b | c |\n|---|---|---|\n| 1 | 2 |\n| 1 | 2 | 3 |\n";
    assert_eq!(table_problems("short.md", short), ["short.md:3: 2 cells in a table whose header has 3"]);
}

const OPEN: &str = "<!-- bench-table ";
const CLOSE: &str = "<!-- /bench-table -->";

/// The table `ranq-bench` generates from `report` in `lang`.
fn generated(report: &Path, lang: &str) -> String {
    let mut cmd = Command::new(bench_bin());
    // The bench reads its settings from RANQ_*, and none of this process's (RANQ_WRITE_DOCS
    // among them) is one.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("RANQ_")) {
        cmd.env_remove(name);
    }
    let out = cmd.args(["compare", "--replot"]).arg(report).args(["--markdown", "-", "--lang", lang]).output().unwrap();
    assert!(
        out.status.success(),
        "ranq-bench compare --replot {}: {}",
        report.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The page with every measured table replaced by what its report generates now, and the
/// reports it names (relative to the repository).
fn regenerate(file: &str, text: &str) -> (String, Vec<PathBuf>) {
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let lang = if file.starts_with("docs/ko/") { "ko" } else { "en" };
    let mut page = String::new();
    let mut reports = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(OPEN) {
        let line_end = rest[open..].find('\n').map_or(rest.len(), |n| open + n + 1);
        let marker = rest[open + OPEN.len()..line_end].trim_end();
        let report = marker
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("{file}: {OPEN}… must end with --> on its line"))
            .trim();
        // The table ends at its closer, which must come before the next table's marker: a missing
        // closer must not let a rewrite swallow the page up to the next table's.
        let body = &rest[line_end..];
        let close = body.find(CLOSE).unwrap_or_else(|| panic!("{file}: {report}'s table has no {CLOSE}"));
        assert!(body.find(OPEN).is_none_or(|next| next > close), "{file}: {report}'s table has no {CLOSE}");
        let report = normalise(&dir.join(report));
        page.push_str(&rest[..line_end]);
        page.push_str(&generated(&root().join(&report), lang));
        reports.push(report);
        rest = &body[close..];
    }
    page.push_str(rest);
    (page, reports)
}

/// `a/b/../c` → `a/c`, so the two editions' references to one report compare equal.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_measured_table_is_what_its_report_generates() {
    let mut marked = 0;
    for file in markdown_files() {
        let path = root().join(&file);
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains(OPEN) {
            continue;
        }
        let (page, reports) = regenerate(&file, &text);
        marked += reports.len();
        if std::env::var_os("RANQ_WRITE_DOCS").is_some() {
            std::fs::write(&path, &page).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap();
        assert!(
            page == checked_in,
            "{file}: a measured table differs from its report; regenerate with \
             RANQ_WRITE_DOCS=1 cargo test -p ranq-tests --test it docs"
        );
    }
    assert!(marked >= 3, "only {marked} measured tables found: the markers were lost");
}

/// Pages kept in two languages: the English original and its Korean edition.
const EDITIONS: [[&str; 2]; 1] = [["docs/architecture-comparison.md", "docs/ko/architecture-comparison.md"]];

/// A Mermaid diagram with its words taken out: the diagram's kind, its participants' and nodes'
/// ids, and its arrows in order. Two editions of a diagram translate the labels and keep this.
fn skeleton(diagram: &str) -> Vec<String> {
    diagram
        .lines()
        .map(|line| {
            let mut line: String = line.trim().split('"').step_by(2).collect();
            if line.starts_with("participant ")
                && let Some(at) = line.find(" as ")
            {
                line.truncate(at);
            }
            // A message's or a note's text follows its colon (labels in quotes are gone already).
            if (line.contains("->") || line.starts_with("Note "))
                && let Some(at) = line.find(':')
            {
                line.truncate(at);
            }
            // An edge's label: `A -- words --> B` is `A --> B`.
            if let Some(start) = line.find(" -- ")
                && let Some(end) = line[start..].find(" -->")
            {
                line.replace_range(start..start + end, "");
            }
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|line| !line.is_empty())
        .collect()
}

/// The Mermaid diagrams of a Markdown text, in order.
fn diagrams(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new_ext(text, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::CodeBlock(pulldown_cmark::CodeBlockKind::Fenced(lang))) if &*lang == "mermaid" => {
                current = Some(String::new());
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t);
                }
            }
            Event::End(pulldown_cmark::TagEnd::CodeBlock) => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

#[test]
fn both_editions_carry_the_same_tables_and_diagrams() {
    for [original, edition] in EDITIONS {
        let read = |file: &str| std::fs::read_to_string(root().join(file)).unwrap();
        let (a, b) = (read(original), read(edition));
        let reports = |file: &str, text: &str| -> Vec<PathBuf> {
            let dir = Path::new(file).parent().unwrap();
            text.match_indices(OPEN)
                .map(|(at, _)| {
                    let rest = &text[at + OPEN.len()..];
                    normalise(&dir.join(rest[..rest.find("-->").unwrap()].trim()))
                })
                .collect()
        };
        assert_eq!(
            reports(original, &a),
            reports(edition, &b),
            "{edition} shows other measured tables than {original}"
        );
        let (da, db) = (diagrams(&a), diagrams(&b));
        assert_eq!(da.len(), db.len(), "{edition} has {} diagrams, {original} {}", db.len(), da.len());
        for (i, (x, y)) in da.iter().zip(&db).enumerate() {
            assert_eq!(skeleton(x), skeleton(y), "diagram {} of {edition} is not the one of {original}", i + 1);
        }
    }
}

#[test]
fn a_diagram_skeleton_keeps_ids_and_arrows_and_drops_words() {
    let en =
        "sequenceDiagram\n  participant A as server A\n  A->>R: SET x (pipelined)\n  Note over A,R: every minute\n";
    let ko = "sequenceDiagram\n  participant A as 서버 A\n  A->>R: SET x (파이프라인)\n  Note over A,R: 매분\n";
    assert_eq!(skeleton(en), skeleton(ko));
    let moved = "sequenceDiagram\n  participant A as 서버 A\n  R->>A: SET x\n  Note over A,R: 매분\n";
    assert_ne!(skeleton(en), skeleton(moved));
    let flow = "flowchart LR\n  P[\"tick\"] -- \"cron, lease\" --> Q\n  W -- read --> DB\n";
    let flow_ko = "flowchart LR\n  P[\"틱\"] -- \"cron, 리스\" --> Q\n  W -- 읽기 --> DB\n";
    assert_eq!(skeleton(flow), skeleton(flow_ko));
    assert_eq!(skeleton(flow), ["flowchart LR", "P[] --> Q", "W --> DB"]);
}
