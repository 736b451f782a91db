//! The UI's pages and their JSON twins, rendered on the server from the [`State`].
//!
//! Every HTML page at `P` has a JSON twin at `/api/P` (`/` ↔ `/api/jobs`) with the same
//! figures, so a test or a script reads exactly what a person sees.

use crate::store::{Executor, Job, Stage, State, Status, Task};
use serde::Serialize;
use spate_core::metrics::TaskMetrics;
use std::fmt::Write as _;

/// A rendered answer.
pub enum Page {
    /// `text/html`.
    Html(String),
    /// `application/json`.
    Json(String),
    /// 404 with a message.
    NotFound(String),
}

#[derive(Serialize)]
struct AppView<'a> {
    app: &'a crate::store::AppInfo,
    jobs: usize,
    running_jobs: usize,
    executors: usize,
}

#[derive(Serialize)]
struct JobView<'a> {
    job: &'a Job,
    stages: Vec<&'a Stage>,
}

#[derive(Serialize)]
struct StageView<'a> {
    stage: &'a Stage,
    tasks: &'a [Task],
}

fn json<T: Serialize>(v: &T) -> Page {
    match serde_json::to_string_pretty(v) {
        Ok(s) => Page::Json(s),
        Err(e) => Page::NotFound(format!("encoding: {e}")),
    }
}

/// Answer `path` from `state`.
pub fn render(state: &State, path: &str) -> Page {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let id = |s: &str| s.parse::<usize>().ok();
    match parts.as_slice() {
        [] | ["jobs"] => Page::Html(jobs_page(state)),
        ["jobs", n] => match id(n).and_then(|n| state.jobs.get(&n)) {
            Some(j) => Page::Html(job_page(state, j)),
            None => Page::NotFound(format!("no job {n}")),
        },
        ["stages"] => Page::Html(stages_page(state)),
        ["stages", n] => match id(n).and_then(|n| state.stages.get(&n)) {
            Some(s) => Page::Html(stage_page(state, s)),
            None => Page::NotFound(format!("no stage {n}")),
        },
        ["executors"] => Page::Html(executors_page(state)),
        ["api", "app"] => json(&AppView {
            app: &state.app,
            jobs: state.jobs.len(),
            running_jobs: state
                .jobs
                .values()
                .filter(|j| j.status == Status::Running)
                .count(),
            executors: state.executors.len(),
        }),
        ["api", "jobs"] => json(&state.jobs.values().collect::<Vec<_>>()),
        ["api", "jobs", n] => match id(n).and_then(|n| state.jobs.get(&n)) {
            Some(j) => json(&JobView {
                job: j,
                stages: j
                    .stages
                    .iter()
                    .filter_map(|s| state.stages.get(s))
                    .collect(),
            }),
            None => Page::NotFound(format!("no job {n}")),
        },
        ["api", "stages"] => json(&state.stages.values().collect::<Vec<_>>()),
        ["api", "stages", n] => match id(n).and_then(|n| state.stages.get(&n)) {
            Some(s) => json(&StageView {
                stage: s,
                tasks: state.tasks.get(&s.stage).map_or(&[], Vec::as_slice),
            }),
            None => Page::NotFound(format!("no stage {n}")),
        },
        ["api", "executors"] => json(&state.executors.values().collect::<Vec<&Executor>>()),
        _ => Page::NotFound(format!("no page {path}")),
    }
}

/// HTML-escape.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Cancelled => "cancelled",
    }
}

fn badge(s: Status) -> String {
    format!("<span class=\"st {0}\">{0}</span>", status_label(s))
}

fn ms(d: u64) -> String {
    if d < 1000 {
        format!("{d} ms")
    } else if d < 60_000 {
        format!("{:.1} s", d as f64 / 1000.0)
    } else {
        format!("{:.1} min", d as f64 / 60_000.0)
    }
}

fn bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn now_or(end: Option<u64>) -> u64 {
    end.unwrap_or_else(spate_scheduler::listener::now_ms)
}

fn progress(done: usize, total: usize) -> String {
    let pct = if total == 0 {
        100.0
    } else {
        100.0 * done as f64 / total as f64
    };
    format!(
        "<div class=\"bar\"><div style=\"width:{pct:.0}%\"></div><span>{done}/{total}</span></div>"
    )
}

fn layout(state: &State, title: &str, body: &str) -> String {
    let refresh = if state.app.end.is_none() {
        "<meta http-equiv=\"refresh\" content=\"2\">"
    } else {
        ""
    };
    let uptime = ms(now_or(state.app.end).saturating_sub(state.app.start));
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
<title>{t} · spate {app}</title><style>{CSS}</style></head><body>\
<header><b>spate</b> <span class=\"app\">{app}</span> on <code>{master}</code> · up {uptime}{ended}\
<nav><a href=\"/\">Jobs</a><a href=\"/stages\">Stages</a><a href=\"/executors\">Executors</a></nav></header>\
<main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        app = esc(&state.app.name),
        master = esc(&state.app.master),
        ended = if state.app.end.is_some() {
            " · stopped"
        } else {
            ""
        },
    )
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#23395d;color:#fff;padding:.6em 1em}header a{color:#fff;margin-left:1.2em}\
header nav{display:inline;margin-left:2em}main{padding:0 1em 2em}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}\
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eef}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.st{padding:0 .4em;border-radius:3px;font-size:.85em}.succeeded{background:#cfc}.running{background:#cdf}\
.failed{background:#fcc}.pending{background:#eee}.skipped,.cancelled{background:#eee;color:#888}\
.bar{position:relative;width:12em;height:1.2em;background:#eee;border-radius:3px}\
.bar div{position:absolute;height:100%;background:#9c9;border-radius:3px}\
.bar span{position:absolute;width:100%;text-align:center;font-size:.8em;line-height:1.5em}\
.err{color:#a00;white-space:pre-wrap;max-width:50em}svg text{font-size:12px}";

fn jobs_page(state: &State) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>{} jobs, {} running · {} executors · JSON: <a href=\"/api/jobs\">/api/jobs</a></p>",
        state.jobs.len(),
        state
            .jobs
            .values()
            .filter(|j| j.status == Status::Running)
            .count(),
        state.executors.len()
    );
    b.push_str("<table id=\"jobs\"><tr><th>Job</th><th>Action on</th><th>Status</th><th>Stages</th><th>Tasks</th><th>Failed tasks</th><th>Duration</th></tr>");
    for j in state.jobs.values().rev() {
        let done_stages = j
            .stages
            .iter()
            .filter_map(|s| state.stages.get(s))
            .filter(|s| matches!(s.status, Status::Succeeded | Status::Skipped))
            .count();
        let _ = write!(
            b,
            "<tr><td><a href=\"/jobs/{id}\">{id}</a></td><td>{rdd}</td><td>{st}</td><td class=\"n\">{done_stages}/{ns}</td><td>{bar}</td><td class=\"n\">{f}</td><td class=\"n\">{d}</td></tr>",
            id = j.job,
            rdd = esc(&j.rdd),
            st = badge(j.status),
            ns = j.stages.len(),
            bar = progress(j.tasks_done, j.tasks_total),
            f = j.tasks_failed,
            d = ms(now_or(j.end).saturating_sub(j.start)),
        );
        if let Some(e) = &j.error {
            let _ = write!(
                b,
                "<tr><td></td><td colspan=\"6\" class=\"err\">{}</td></tr>",
                esc(e)
            );
        }
    }
    b.push_str("</table>");
    layout(state, "Jobs", &b)
}

fn stage_rows(state: &State, stages: &[&Stage], b: &mut String) {
    b.push_str("<table class=\"stages\"><tr><th>Stage</th><th>RDD</th><th>Kind</th><th>Status</th><th>Attempt</th><th>Tasks</th><th>Failed</th><th>Input</th><th>Shuffle read</th><th>Shuffle write</th><th>Duration</th></tr>");
    for s in stages {
        let m = &s.metrics;
        let dur = s
            .submitted
            .map(|t| {
                ms(now_or(if s.status == Status::Running {
                    None
                } else {
                    s.completed
                })
                .saturating_sub(t))
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td><a href=\"/stages/{id}\">{id}</a></td><td>{name}</td><td>{kind}</td><td>{st}</td><td class=\"n\">{a}</td><td>{bar}</td><td class=\"n\">{f}</td><td class=\"n\">{ir} rec · {ib}</td><td class=\"n\">{rr} rec · {rb}</td><td class=\"n\">{wr} rec · {wb}</td><td class=\"n\">{dur}</td></tr>",
            id = s.stage,
            name = esc(&s.name),
            kind = match s.kind {
                spate_scheduler::listener::StageKind::ShuffleMap => "shuffle map",
                spate_scheduler::listener::StageKind::Result => "result",
            },
            st = badge(s.status),
            a = s.attempt,
            bar = progress(s.tasks_done.min(s.tasks_total), s.tasks_total),
            f = s.tasks_failed,
            ir = m.input_records,
            ib = bytes(m.input_bytes),
            rr = m.shuffle_read_records,
            rb = bytes(m.shuffle_read_bytes),
            wr = m.shuffle_write_records,
            wb = bytes(m.shuffle_write_bytes),
        );
        if let Some(f) = &s.failure {
            let _ = write!(
                b,
                "<tr><td></td><td colspan=\"10\" class=\"err\">{}</td></tr>",
                esc(f)
            );
        }
    }
    b.push_str("</table>");
    let _ = state;
}

fn job_page(state: &State, j: &Job) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>{} · action on <code>{}</code> · {} partitions · JSON: <a href=\"/api/jobs/{id}\">/api/jobs/{id}</a></p>",
        badge(j.status),
        esc(&j.rdd),
        j.partitions,
        id = j.job
    );
    if let Some(e) = &j.error {
        let _ = write!(b, "<p class=\"err\">{}</p>", esc(e));
    }
    let stages: Vec<&Stage> = j
        .stages
        .iter()
        .filter_map(|s| state.stages.get(s))
        .collect();
    b.push_str("<h2>Stage DAG</h2>");
    b.push_str(&dag_svg(&stages));
    b.push_str("<h2>Stages</h2>");
    stage_rows(state, &stages, &mut b);
    layout(state, &format!("Job {}", j.job), &b)
}

fn stages_page(state: &State) -> String {
    let mut b = String::from("<p>JSON: <a href=\"/api/stages\">/api/stages</a></p>");
    let stages: Vec<&Stage> = state.stages.values().rev().collect();
    stage_rows(state, &stages, &mut b);
    layout(state, "Stages", &b)
}

fn metric_cells(m: &TaskMetrics, b: &mut String) {
    let _ = write!(
        b,
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
        m.input_records,
        bytes(m.input_bytes),
        m.shuffle_read_records,
        bytes(m.shuffle_read_bytes),
        m.shuffle_write_records,
        bytes(m.shuffle_write_bytes),
        bytes(m.result_bytes)
    );
}

fn stage_page(state: &State, s: &Stage) -> String {
    let mut b = String::new();
    let jobs: Vec<String> = s
        .jobs
        .iter()
        .map(|j| format!("<a href=\"/jobs/{j}\">{j}</a>"))
        .collect();
    let parents: Vec<String> = s
        .parents
        .iter()
        .map(|p| format!("<a href=\"/stages/{p}\">{p}</a>"))
        .collect();
    let _ = write!(
        b,
        "<p>{} · <code>{}</code> · attempt {} · jobs {} · reads stages {} · JSON: <a href=\"/api/stages/{id}\">/api/stages/{id}</a></p>",
        badge(s.status),
        esc(&s.name),
        s.attempt,
        if jobs.is_empty() {
            "-".into()
        } else {
            jobs.join(", ")
        },
        if parents.is_empty() {
            "none".into()
        } else {
            parents.join(", ")
        },
        id = s.stage
    );
    let _ = write!(
        b,
        "<p>{} of {} tasks done, {} running, {} failed attempts · run time {}</p>",
        s.tasks_done,
        s.tasks_total,
        s.tasks_running,
        s.tasks_failed,
        ms(s.metrics.run_ms)
    );
    if let Some(f) = &s.failure {
        let _ = write!(b, "<p class=\"err\">{}</p>", esc(f));
    }
    if !state.tasks.contains_key(&s.stage) && s.tasks_done + s.tasks_failed > 0 {
        b.push_str("<p>Task rows of this stage were dropped: the UI keeps the most recent task attempts only.</p>");
    }
    b.push_str("<table id=\"tasks\"><tr><th>Task</th><th>Partition</th><th>Attempt</th><th>Stage attempt</th><th>Executor</th><th>Status</th><th>Duration</th><th>Input rec</th><th>Input</th><th>Shuffle read rec</th><th>Shuffle read</th><th>Shuffle write rec</th><th>Shuffle write</th><th>Result</th><th>Error</th></tr>");
    for t in state.tasks.get(&s.stage).map_or(&[][..], Vec::as_slice) {
        let _ = write!(
            b,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}{}</td><td class=\"n\">{}</td>",
            t.task,
            t.partition,
            t.attempt,
            t.stage_attempt,
            esc(&t.executor),
            badge(t.status),
            if t.fetch_failed { " (fetch)" } else { "" },
            t.duration_ms.map(ms).unwrap_or_default(),
        );
        metric_cells(&t.metrics, &mut b);
        let _ = write!(
            b,
            "<td class=\"err\">{}</td></tr>",
            esc(t.error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    layout(state, &format!("Stage {}", s.stage), &b)
}

fn executors_page(state: &State) -> String {
    let mut b = String::from("<p>JSON: <a href=\"/api/executors\">/api/executors</a></p>");
    b.push_str("<table id=\"executors\"><tr><th>Executor</th><th>Address</th><th>Cores</th><th>State</th><th>Running</th><th>Done</th><th>Failed</th><th>Input rec</th><th>Input</th><th>Shuffle read rec</th><th>Shuffle read</th><th>Shuffle write rec</th><th>Shuffle write</th><th>Results</th></tr>");
    for x in state.executors.values() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(&x.executor),
            esc(x.address.as_deref().unwrap_or("-")),
            x.cores,
            x.state,
            x.reason
                .as_deref()
                .map(|r| format!(": {}", esc(r)))
                .unwrap_or_default(),
            x.tasks_running,
            x.tasks_done,
            x.tasks_failed,
        );
        metric_cells(&x.metrics, &mut b);
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    layout(state, "Executors", &b)
}

/// The stage DAG of a job as SVG: stages in columns by depth (a stage right of every
/// stage it reads), arrows from parent to child, each box linking to its stage.
pub fn dag_svg(stages: &[&Stage]) -> String {
    const W: i64 = 210;
    const H: i64 = 54;
    const GX: i64 = 60;
    const GY: i64 = 20;
    let ids: Vec<usize> = stages.iter().map(|s| s.stage).collect();
    let mut depth: std::collections::BTreeMap<usize, i64> = std::collections::BTreeMap::new();
    // Parents come first in a job's stage list; iterate until stable to be safe.
    for _ in 0..stages.len().max(1) {
        for s in stages {
            let d = s
                .parents
                .iter()
                .filter(|p| ids.contains(p))
                .map(|p| depth.get(p).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            depth.insert(s.stage, d);
        }
    }
    let mut rows: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    let mut pos = std::collections::BTreeMap::new();
    for s in stages {
        let d = depth.get(&s.stage).copied().unwrap_or(0);
        let r = rows.entry(d).or_insert(0);
        pos.insert(s.stage, (10 + d * (W + GX), 10 + *r * (H + GY)));
        *r += 1;
    }
    let width = 20 + (depth.values().max().copied().unwrap_or(0) + 1) * (W + GX);
    let height = 20 + rows.values().max().copied().unwrap_or(1) * (H + GY);
    let mut svg = format!(
        "<svg id=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"stage DAG\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#556\"/></marker></defs>"
    );
    for s in stages {
        for p in &s.parents {
            if let (Some(&(px, py)), Some(&(cx, cy))) = (pos.get(p), pos.get(&s.stage)) {
                let _ = write!(
                    svg,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#556\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>",
                    px + W,
                    py + H / 2,
                    cx,
                    cy + H / 2
                );
            }
        }
    }
    for s in stages {
        let Some(&(x, y)) = pos.get(&s.stage) else {
            continue;
        };
        let fill = match s.status {
            Status::Succeeded => "#cfc",
            Status::Running => "#cdf",
            Status::Failed => "#fcc",
            Status::Pending | Status::Skipped | Status::Cancelled => "#eee",
        };
        let name: String = s.name.chars().take(30).collect();
        let _ = write!(
            svg,
            "<a href=\"/stages/{id}\"><g class=\"stage\" data-stage=\"{id}\"><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"{fill}\" stroke=\"#445\"/>\
<text x=\"{tx}\" y=\"{t1}\" font-weight=\"bold\">Stage {id} · {st}</text><text x=\"{tx}\" y=\"{t2}\">{name}</text>\
<text x=\"{tx}\" y=\"{t3}\">{done}/{total} tasks</text></g></a>",
            id = s.stage,
            tx = x + 8,
            t1 = y + 16,
            t2 = y + 32,
            t3 = y + 47,
            st = status_label(s.status),
            name = esc(&name),
            done = s.tasks_done.min(s.tasks_total),
            total = s.tasks_total,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_scheduler::listener::{SchedulerEvent, StageInfo, StageKind};

    fn state() -> State {
        let mut st = State::default();
        st.apply(&SchedulerEvent::ApplicationStart {
            time: 0,
            app: "demo<app>".into(),
            master: "local[2]".into(),
        });
        st.apply(&SchedulerEvent::JobStart {
            time: 1,
            job: 0,
            rdd: "join[7] at main.rs:3".into(),
            partitions: 2,
            stages: vec![
                StageInfo {
                    stage: 0,
                    name: "a".into(),
                    kind: StageKind::ShuffleMap,
                    tasks: 2,
                    parents: vec![],
                },
                StageInfo {
                    stage: 1,
                    name: "b".into(),
                    kind: StageKind::ShuffleMap,
                    tasks: 2,
                    parents: vec![],
                },
                StageInfo {
                    stage: 2,
                    name: "c".into(),
                    kind: StageKind::Result,
                    tasks: 2,
                    parents: vec![0, 1],
                },
            ],
        });
        st
    }

    #[test]
    fn pages_and_their_json_twins() {
        let st = state();
        let Page::Html(h) = render(&st, "/") else {
            panic!("html")
        };
        assert!(h.contains("demo&lt;app&gt;"), "escaped app name");
        assert!(h.contains("href=\"/jobs/0\""));
        let Page::Json(j) = render(&st, "/api/jobs/0") else {
            panic!("json")
        };
        let v: serde_json::Value = serde_json::from_str(&j).expect("json");
        assert_eq!(v["job"]["tasks_total"], 6);
        assert_eq!(v["stages"].as_array().map(Vec::len), Some(3));
        assert!(matches!(render(&st, "/jobs/9"), Page::NotFound(_)));
        assert!(matches!(render(&st, "/etc/passwd"), Page::NotFound(_)));
        let Page::Html(job) = render(&st, "/jobs/0") else {
            panic!("html")
        };
        assert!(job.contains("<svg id=\"dag\""));
    }

    #[test]
    fn the_dag_puts_a_stage_right_of_its_parents_with_an_arrow_each() {
        let st = state();
        let stages: Vec<&Stage> = st.stages.values().collect();
        let svg = dag_svg(&stages);
        assert_eq!(svg.matches("<line").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"stage\"").count(), 3);
        // stage 2 is in the second column
        assert!(svg.contains("<rect x=\"280\""), "{svg}");
    }
}
