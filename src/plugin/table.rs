//! What the plugin prints, as pure functions of FineTuneJobs and the time: the `list` table and
//! the `watch` progress line.

use jiff::Timestamp;

use crate::api::{FineTuneJob, Phase};

/// One line of `kubectl finetune list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub progress: String,
    pub epoch: String,
    pub loss: String,
    pub eta: String,
    /// GPU-hours of the attempts that ended (`status.usage.gpuHours`).
    pub gpu_hours: String,
}

const ABSENT: &str = "-";

impl Row {
    /// The job's row, its ETA counted from `now`.
    pub fn from_job(job: &FineTuneJob, now: Timestamp) -> Row {
        let status = job.status.as_ref();
        let phase = status.and_then(|s| s.phase);
        let progress = status.and_then(|s| s.progress.as_ref());
        let eta = match phase {
            // A finished or suspended job has no time left to show.
            Some(p) if p.is_finished() || p == Phase::Suspended => None,
            _ => progress.and_then(|p| p.eta.as_ref()).map(|t| t.0),
        };
        Row {
            namespace: job.metadata.namespace.clone().unwrap_or_default(),
            name: job.metadata.name.clone().unwrap_or_default(),
            phase: phase.map_or(ABSENT, Phase::as_str).to_string(),
            progress: progress
                .and_then(|p| p.percent)
                .map_or_else(|| ABSENT.into(), |p| format!("{p}%")),
            epoch: progress
                .and_then(epoch_text)
                .unwrap_or_else(|| ABSENT.into()),
            loss: progress
                .and_then(|p| p.loss)
                .map_or_else(|| ABSENT.into(), format_loss),
            eta: eta.map_or_else(|| ABSENT.into(), |eta| format_remaining(eta, now)),
            gpu_hours: status
                .and_then(|s| s.usage.as_ref())
                .map_or_else(|| ABSENT.into(), |u| format!("{:.2}", u.gpu_hours)),
        }
    }
}

fn epoch_text(p: &crate::api::Progress) -> Option<String> {
    p.epoch_text
        .clone()
        .or_else(|| match (p.epoch, p.total_epochs) {
            (Some(e), Some(t)) => Some(format!("{e}/{t}")),
            (Some(e), None) => Some(e.to_string()),
            _ => None,
        })
}

/// A loss with four decimals: enough to see it move, short enough for a table.
pub fn format_loss(loss: f64) -> String {
    format!("{loss:.4}")
}

/// The time from `now` to `eta`, in its two largest units (`1h05m`, `12m30s`, `42s`); `0s` once
/// `eta` has passed.
pub fn format_remaining(eta: Timestamp, now: Timestamp) -> String {
    let secs = eta.as_second() - now.as_second();
    if secs <= 0 {
        return "0s".into();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The `list` table: a NAMESPACE column first with `all_namespaces`; columns left-aligned, three
/// spaces apart, as kubectl prints them.
pub fn render_table(rows: &[Row], all_namespaces: bool) -> String {
    let mut lines: Vec<Vec<&str>> = Vec::with_capacity(rows.len() + 1);
    let mut header = vec![
        "NAME",
        "PHASE",
        "PROGRESS",
        "EPOCH",
        "LOSS",
        "ETA",
        "GPU-HOURS",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    lines.push(header);
    for r in rows {
        let mut cells = vec![
            r.name.as_str(),
            &r.phase,
            &r.progress,
            &r.epoch,
            &r.loss,
            &r.eta,
            &r.gpu_hours,
        ];
        if all_namespaces {
            cells.insert(0, &r.namespace);
        }
        lines.push(cells);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c + 1 == columns {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The `watch` line of a job: its phase, then what is known of its progress, e.g.
/// `Training  45%  epoch 2/3  step 40/90  loss 1.2345  ETA 5m00s`.
pub fn progress_line(job: &FineTuneJob, now: Timestamp) -> String {
    let row = Row::from_job(job, now);
    let progress = job.status.as_ref().and_then(|s| s.progress.as_ref());
    let mut parts = vec![row.phase.clone()];
    if row.progress != ABSENT {
        parts.push(row.progress);
    }
    if row.epoch != ABSENT {
        parts.push(format!("epoch {}", row.epoch));
    }
    if let Some(step) = progress.and_then(|p| p.step) {
        match progress.and_then(|p| p.total_steps) {
            Some(total) => parts.push(format!("step {step}/{total}")),
            None => parts.push(format!("step {step}")),
        }
    }
    if row.loss != ABSENT {
        parts.push(format!("loss {}", row.loss));
    }
    if let Some(v) = progress.and_then(|p| p.validation_loss) {
        parts.push(format!("val loss {}", format_loss(v)));
    }
    if row.eta != ABSENT {
        parts.push(format!("ETA {}", row.eta));
    }
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::JobFixture;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().unwrap()
    }

    fn training() -> FineTuneJob {
        JobFixture::new("ft")
            .namespace("team-a")
            .status_json(json!({
                "phase": "Training",
                "progress": {
                    "epoch": 2, "totalEpochs": 3, "epochText": "2/3", "step": 40,
                    "totalSteps": 90, "percent": 45, "loss": 1.23456,
                    "eta": "2025-01-01T13:05:30Z",
                },
                "usage": {"gpuSeconds": 16200, "gpuHours": 4.5, "gpuSecondsLost": 0,
                          "attempts": 2, "preemptions": 1, "disruptions": 0},
            }))
            .build()
    }

    #[test]
    fn a_training_job_shows_its_progress_and_time_left() {
        assert_eq!(
            Row::from_job(&training(), now()),
            Row {
                namespace: "team-a".into(),
                name: "ft".into(),
                phase: "Training".into(),
                progress: "45%".into(),
                epoch: "2/3".into(),
                loss: "1.2346".into(),
                eta: "1h05m".into(),
                gpu_hours: "4.50".into(),
            }
        );
    }

    #[test]
    fn a_new_job_shows_dashes() {
        let row = Row::from_job(&JobFixture::new("new").build(), now());
        assert_eq!(
            (
                row.phase.as_str(),
                row.progress.as_str(),
                row.epoch.as_str(),
                row.loss.as_str(),
                row.eta.as_str()
            ),
            ("-", "-", "-", "-", "-")
        );
    }

    #[test]
    fn finished_and_suspended_jobs_have_no_eta() {
        for phase in ["Succeeded", "Failed", "Suspended"] {
            let job = JobFixture::new("ft")
                .status_json(json!({"phase": phase, "progress": {"percent": 100,
                    "eta": "2025-01-01T13:00:00Z"}}))
                .build();
            assert_eq!(Row::from_job(&job, now()).eta, "-", "{phase}");
        }
    }

    #[test]
    fn the_epoch_falls_back_to_the_counts() {
        let job = JobFixture::new("ft")
            .status_json(json!({"phase": "Training", "progress": {"epoch": 1, "totalEpochs": 4}}))
            .build();
        assert_eq!(Row::from_job(&job, now()).epoch, "1/4");
    }

    #[test]
    fn remaining_time_takes_its_two_largest_units() {
        let at = |s: i64| Timestamp::from_second(now().as_second() + s).unwrap();
        assert_eq!(format_remaining(at(42), now()), "42s");
        assert_eq!(format_remaining(at(750), now()), "12m30s");
        assert_eq!(format_remaining(at(3900), now()), "1h05m");
        assert_eq!(format_remaining(at(2 * 86_400 + 3 * 3600), now()), "2d03h");
        assert_eq!(format_remaining(at(0), now()), "0s");
        assert_eq!(format_remaining(at(-60), now()), "0s");
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let rows = vec![
            Row::from_job(&training(), now()),
            Row::from_job(&JobFixture::new("a-longer-name").build(), now()),
        ];
        assert_eq!(
            render_table(&rows, false),
            "\
NAME            PHASE      PROGRESS   EPOCH   LOSS     ETA     GPU-HOURS
ft              Training   45%        2/3     1.2346   1h05m   4.50
a-longer-name   -          -          -       -        -       -
"
        );
        let all = render_table(&rows[..1], true);
        assert!(
            all.starts_with("NAMESPACE   NAME   PHASE")
                && all
                    .lines()
                    .nth(1)
                    .unwrap()
                    .starts_with("team-a      ft     Training"),
            "{all}"
        );
    }

    #[test]
    fn the_watch_line_says_what_is_known() {
        assert_eq!(
            progress_line(&training(), now()),
            "Training  45%  epoch 2/3  step 40/90  loss 1.2346  ETA 1h05m"
        );
        assert_eq!(progress_line(&JobFixture::new("ft").build(), now()), "-");
    }
}
