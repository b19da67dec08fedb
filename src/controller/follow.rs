//! Following the rank-0 log of training jobs: one bounded, incremental read per job at most
//! every `interval`, from the cursor the status holds, and no more than a budget of reads per
//! second over all jobs: each read is a request the apiserver proxies to a kubelet, so a
//! thousand training jobs read every 10 s would cost it 100 such requests a second, and more
//! still while the apiserver is slow, since a slower start leaves more jobs to read.
//!
//! Reads give way to starts: while new jobs are being started, a read that is due is put off
//! once, by one more spacing. A user who just applied a job waits for it to start; the progress
//! of jobs already training can wait a little (never more than one extra spacing, however long
//! jobs keep arriving).
//!
//! A read over lines that changed nothing (start-up lines, a JSON block not yet complete) is not
//! reported: the status keeps its cursor, with no write, and the follower goes on from where it
//! stopped. Only a read that found something, stopped at the limit, or is the last, moves the
//! status's cursor; a restarted operator reads the quiet lines again, to no effect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tracing::debug;

use crate::api::{FineTuneJob, LogCursor};

use crate::logs::cursor::{after_cursor, since_time};
use crate::logs::progress::ProgressParser;
use crate::status::LogRead;
use crate::status::pods::rank0_pod;

/// Bytes asked for in one read. A log that grew more is read again a second later.
pub const READ_LIMIT_BYTES: i64 = 256 * 1024;
/// How soon to read again when a read stopped at the limit.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Most reads of the last look at a finished job's log: 2 MiB, bounded whatever it holds.
const FINAL_READS: usize = 8;

/// What is kept between reads of one job's log: the parser (a JSON block or wrapped line can
/// span two reads) and where it stopped. A restarted operator starts a fresh parser at the
/// status's cursor, which is always at a line start.
struct Follower {
    pod_uid: String,
    parser: ProgressParser,
    /// The cursor after the lines the parser has seen: where the next read starts.
    cursor: Option<LogCursor>,
    /// The status's cursor this state goes on from: the cursor of the last reported read (or
    /// the status's when following began). Quiet reads move `cursor` but not this.
    reported: Option<LogCursor>,
    /// The read due now was already put off once for starting jobs.
    put_off: bool,
    /// When the next read is due: an interval after a read, or [`CATCH_UP`] after one that
    /// stopped at the limit, so a log that grows faster than a read per interval is caught up.
    next_due: Instant,
}

impl Follower {
    fn new(pod_uid: String, status_cursor: Option<LogCursor>, next_due: Instant) -> Self {
        Self {
            pod_uid,
            parser: ProgressParser::new(),
            cursor: status_cursor.clone(),
            reported: status_cursor,
            put_off: false,
            next_due,
        }
    }
}

pub struct Followers {
    interval: Duration,
    /// Most reads a second over all followed jobs (see [`spacing`]).
    reads_per_second: u32,
    jobs: Mutex<HashMap<ObjectRef<FineTuneJob>, Follower>>,
    /// When a new job was last started ([`Followers::job_started`]).
    last_start: Mutex<Option<Instant>>,
}

/// How long after the last start of a new job jobs count as still starting.
const STARTS_SETTLE: Duration = Duration::from_secs(2);

/// The default of [`Followers::with_budget`]: the reads 200 training jobs make at a 10 s
/// interval.
pub const READS_PER_SECOND: u32 = 20;

/// The time between two reads of one job's log while `followed` jobs are followed: `interval`,
/// or longer when the jobs would otherwise read more than `reads_per_second` in all.
pub fn spacing(interval: Duration, reads_per_second: u32, followed: usize) -> Duration {
    let budgeted = Duration::from_secs_f64(followed as f64 / f64::from(reads_per_second.max(1)));
    interval.max(budgeted)
}

impl Followers {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            reads_per_second: READS_PER_SECOND,
            jobs: Mutex::default(),
            last_start: Mutex::default(),
        }
    }

    /// Notes that a new job is being started (its first pass), so that due reads give way.
    pub fn job_started(&self, now: Instant) {
        *self
            .last_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
    }

    /// Whether a new job was started less than [`STARTS_SETTLE`] before `now`.
    fn jobs_starting(&self, now: Instant) -> bool {
        self.last_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| now.saturating_duration_since(t) < STARTS_SETTLE)
    }

    /// At most `reads_per_second` log reads a second over all jobs.
    pub fn with_budget(mut self, reads_per_second: u32) -> Self {
        self.reads_per_second = reads_per_second.max(1);
        self
    }

    /// Reads the new lines of the job's rank-0 container when a read is due. Returns them (if
    /// read) and when the next read is due. A log that cannot be read yet (the pod has not
    /// started) is not an error: progress simply waits.
    ///
    /// `finished`: the PyTorchJob has ended, so this is the last look at the log. The interval
    /// does not apply and reading goes on while reads stop at the limit (at most
    /// [`FINAL_READS`]), so that the final epoch and checkpoint count before the verdict.
    pub async fn read(
        &self,
        client: &Client,
        job: &FineTuneJob,
        pods: &[Pod],
        finished: bool,
    ) -> (Option<LogRead>, Duration) {
        let key = ObjectRef::from(job);
        let (previous, followed) = {
            let mut jobs = self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let previous = jobs.remove(&key);
            (previous, jobs.len() + 1)
        };
        let interval = spacing(self.interval, self.reads_per_second, followed);
        let now = Instant::now();
        if let Some(f) = &previous
            && !finished
            && now < f.next_due
        {
            let wait = f.next_due - now;
            self.put(key, previous);
            return (None, wait);
        }
        let Some((master, container, uid)) = rank0_pod(job, pods)
            .filter(|(p, container)| container_started(p, container))
            .and_then(|(p, container)| Some((p, container, p.uid()?)))
        else {
            self.put(key, previous);
            return (None, self.interval);
        };
        let status_cursor = job
            .status
            .as_ref()
            .and_then(|s| s.log_cursor.clone())
            .filter(|c| c.pod_uid == uid);
        // A container that started less than an interval ago has printed only its start-up
        // lines: the first read waits until it has run one interval, as every later read waits
        // one after the last. Reading at once would cost a read per job just as jobs start, when
        // the apiserver is busiest, for nothing a user would see. The job is followed from now
        // on, so that it counts in the budget's spacing.
        if previous.is_none()
            && !finished
            && let Some(ran) = running_for(master, container)
            && ran < interval
        {
            let wait = interval - ran;
            self.put(key, Some(Follower::new(uid, status_cursor, now + wait)));
            return (None, wait);
        }

        // The parser's state is good only if the status holds the cursor of its last reported
        // read (that status write went through) and the pod is the same.
        let mut follower = previous
            .filter(|f| f.pod_uid == uid && f.reported == status_cursor)
            .unwrap_or_else(|| Follower::new(uid.clone(), status_cursor, now));
        if !finished && !follower.put_off && self.jobs_starting(now) {
            follower.put_off = true;
            follower.next_due = now + interval;
            self.put(key, Some(follower));
            return (None, interval);
        }
        follower.put_off = false;

        let ns = job.namespace().unwrap_or_default();
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        let mut records = Vec::new();
        let mut cursor = follower.cursor.clone();
        let mut cut = false;
        let reads = if finished { FINAL_READS } else { 1 };
        for read in 0..reads {
            let params = LogParams {
                container: Some(container.to_string()),
                timestamps: true,
                since_time: cursor.as_ref().and_then(since_time),
                limit_bytes: Some(READ_LIMIT_BYTES),
                ..Default::default()
            };
            let bytes = match read_log(&api, &master.name_any(), &params).await {
                Ok(bytes) => bytes,
                Err(e) if read == 0 => {
                    debug!(pod = %master.name_any(), error = %e, "rank-0 log not readable yet");
                    follower.next_due = now + interval;
                    self.put(key, Some(follower));
                    return (None, self.interval);
                }
                Err(e) => {
                    debug!(pod = %master.name_any(), error = %e, "rank-0 log read stopped");
                    break;
                }
            };
            cut = is_cut(&bytes, READ_LIMIT_BYTES);
            let mut text = String::from_utf8_lossy(&bytes);
            // The container has ended: a last line without a newline is complete, not a line
            // still being written.
            if finished && !cut && !text.is_empty() && !text.ends_with('\n') {
                text.to_mut().push('\n');
            }
            let new = after_cursor(&text, &uid, cursor.as_ref(), cut);
            let mut lines = Vec::with_capacity(text.len());
            for line in &new.lines {
                lines.extend_from_slice(line.as_bytes());
                lines.push(b'\n');
            }
            records.extend(follower.parser.feed(&lines));
            cursor = new.cursor;
            if !cut {
                break;
            }
        }
        let next = if cut { CATCH_UP } else { interval };
        if finished && !cut {
            // The end of the log: a message still open (a wrapped Rich line) is complete.
            // Nothing is kept: a later read, if any, starts over at the status's cursor.
            records.extend(std::mem::take(&mut follower.parser).finish());
            return (Some(LogRead { records, cursor }), next);
        }
        follower.cursor = cursor.clone();
        follower.next_due = now + next;
        // Quiet: nothing found, and a next read that starts from here will not come back cut
        // over the same lines. Not reported, so that no status is written for it.
        let quiet = records.is_empty() && !cut && !finished;
        let read = (!quiet).then(|| {
            follower.reported = cursor.clone();
            LogRead { records, cursor }
        });
        self.put(key, Some(follower));
        (read, next)
    }

    /// Drops what is kept for a job that no longer trains.
    pub fn forget(&self, job: &ObjectRef<FineTuneJob>) {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job);
    }

    fn put(&self, key: ObjectRef<FineTuneJob>, follower: Option<Follower>) {
        if let Some(f) = follower {
            self.jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, f);
        }
    }
}

/// Whether the training container has started (has a log to read).
fn container_started(pod: &Pod, container: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.name == container)
        .filter_map(|c| c.state.as_ref())
        .any(|s| s.running.is_some() || s.terminated.is_some())
}

/// How long the training container has run, when the pod says when it started (and that was
/// not in the future of this clock).
fn running_for(pod: &Pod, container: &str) -> Option<Duration> {
    let state = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?;
    let started = match (&state.running, &state.terminated) {
        (Some(running), _) => running.started_at.as_ref()?,
        (None, Some(terminated)) => terminated.started_at.as_ref()?,
        (None, None) => return None,
    };
    let ran = jiff::Timestamp::now().duration_since(started.0);
    Duration::try_from(ran).ok()
}

/// Reads at most `params.limit_bytes` of a container's log, as bytes. kube's text API refuses
/// an answer that is not UTF-8, and the kubelet cuts at exactly `limitBytes`, even inside a
/// character: callers decode lossily. The read is bounded here too, whatever the server sends.
pub(super) async fn read_log(
    api: &Api<Pod>,
    pod: &str,
    params: &LogParams,
) -> Result<Vec<u8>, kube::Error> {
    let limit = params
        .limit_bytes
        .map_or(u64::MAX, |l| u64::try_from(l).unwrap_or(0));
    let read = async {
        let stream = api.log_stream(pod, params).await?;
        let mut bytes = Vec::new();
        Box::pin(stream)
            .take(limit)
            .read_to_end(&mut bytes)
            .await
            .map_err(kube::Error::ReadEvents)?;
        Ok(bytes)
    };
    // The client's read timeout catches a kubelet that goes silent, not one that trickles a few
    // bytes now and then: the whole read has a deadline too, so it cannot hold a worker.
    tokio::time::timeout(LOG_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::ReadEvents(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("reading the log of pod {pod} took longer than {LOG_READ_TIMEOUT:?}"),
            )))
        })
}

/// The most one log read may take, however the bytes arrive.
pub(super) const LOG_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a read stopped at `limit` bytes (and so may end inside a line or a character).
fn is_cut(bytes: &[u8], limit: i64) -> bool {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX) >= u64::try_from(limit).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_spread_so_that_all_jobs_together_stay_within_the_budget() {
        let ten = Duration::from_secs(10);
        // Up to interval × budget jobs, each is read every interval.
        assert_eq!(spacing(ten, 20, 1), ten);
        assert_eq!(spacing(ten, 20, 200), ten);
        // Beyond, each less often: 1,000 jobs at 20 reads a second, every 50 s.
        assert_eq!(spacing(ten, 20, 1000), Duration::from_secs(50));
        assert_eq!(spacing(ten, 1, 15), Duration::from_secs(15));
        // A zero budget counts as one read a second.
        assert_eq!(spacing(ten, 0, 30), Duration::from_secs(30));
    }
}
