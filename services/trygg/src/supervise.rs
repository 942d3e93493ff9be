//! Supervision of the long-running tasks: crash-only for the alarm path.
//!
//! The committer, the alarm engine and the push worker (with its timers) are the alarm path: if
//! one of them ends, or stalls with work waiting, alarms would be acknowledged and never handled.
//! Trying to repair a task in place would need state the database already holds, so instead the
//! process reports it (`/readyz` names the part), writes one last log line and exits with a
//! non-zero status; the service manager starts it again and recovery replays from the database.
//! The maintenance task (retention purge, zone refresh) is watched less strictly: its death is
//! logged and shown, but alarms do not depend on it.
//!
//! A stall is seen by sampling: a task with a probe reports its backlog and a counter that moves
//! while it works; a backlog that waits while the counter stands still for `stall_after` is a
//! stall. A task without a probe (the push worker) is watched for its end only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Reads a task's backlog (work waiting) and a counter that moves while it works.
pub(crate) type Probe = Box<dyn Fn() -> (usize, u64) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabel {
    task: &'static str,
}

/// The supervisor: the watched tasks, their health, and where a failure is announced.
pub(crate) struct Supervisor {
    tasks: Mutex<Vec<Arc<Watched>>>,
    stall_after: Duration,
    stopping: AtomicBool,
    failures: mpsc::UnboundedSender<String>,
    up: Family<TaskLabel, Gauge>,
    waiting: Family<TaskLabel, Gauge>,
    backlog: Family<TaskLabel, Gauge>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("stall_after", &self.stall_after).finish_non_exhaustive()
    }
}

/// One watched task.
pub(crate) struct Watched {
    name: &'static str,
    /// On the alarm path: its death or stall ends the process.
    critical: bool,
    probe: Option<Probe>,
    state: Mutex<State>,
    ended: watch::Sender<bool>,
}

#[derive(Debug)]
struct State {
    alive: bool,
    stuck: bool,
    backlog: Option<usize>,
    counter: u64,
    progress_at: Instant,
    progress_time: DateTime<Utc>,
}

impl Supervisor {
    /// A supervisor that calls a task stuck after `stall_after` without progress while work
    /// waits; failures of alarm-path tasks are sent on the returned receiver.
    pub(crate) fn new(
        stall_after: Duration,
        registry: &mut Registry,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (failures, rx) = mpsc::unbounded_channel();
        let supervisor = Self {
            tasks: Mutex::default(),
            stall_after,
            stopping: AtomicBool::new(false),
            failures,
            up: Family::default(),
            waiting: Family::default(),
            backlog: Family::default(),
        };
        registry.register(
            "trygg_task_up",
            "Whether a supervised task runs (1) or has ended (0)",
            supervisor.up.clone(),
        );
        registry.register(
            "trygg_task_waiting_seconds",
            "Seconds a task has had work waiting without progress (its lag; 0 when idle or moving)",
            supervisor.waiting.clone(),
        );
        registry.register(
            "trygg_task_backlog",
            "Work waiting for a task: fixes for the committer, commits for the alarm engine",
            supervisor.backlog.clone(),
        );
        (Arc::new(supervisor), rx)
    }

    /// Watches `task`; `probe` (if any) tells its backlog and progress.
    pub(crate) fn watch(
        self: &Arc<Self>,
        name: &'static str,
        critical: bool,
        task: JoinHandle<()>,
        probe: Option<Probe>,
    ) -> Arc<Watched> {
        let now = Instant::now();
        let watched = Arc::new(Watched {
            name,
            critical,
            probe,
            state: Mutex::new(State {
                alive: true,
                stuck: false,
                backlog: None,
                counter: 0,
                progress_at: now,
                progress_time: Utc::now(),
            }),
            ended: watch::Sender::new(false),
        });
        self.up.get_or_create(&TaskLabel { task: name }).set(1);
        self.tasks.lock().expect("supervisor lock").push(watched.clone());
        let (supervisor, w) = (self.clone(), watched.clone());
        tokio::spawn(async move {
            let outcome = task.await;
            w.state.lock().expect("task state lock").alive = false;
            supervisor.up.get_or_create(&TaskLabel { task: w.name }).set(0);
            if !supervisor.stopping.load(Ordering::SeqCst) {
                let how = match outcome {
                    Ok(()) => "ended".to_owned(),
                    Err(e) if e.is_panic() => "panicked".to_owned(),
                    Err(e) => format!("ended ({e})"),
                };
                if w.critical {
                    tracing::error!(task = w.name, how, "A task of the alarm path has ended");
                    let _ = supervisor.failures.send(format!("{} {how}", w.name));
                } else {
                    tracing::error!(
                        task = w.name,
                        how,
                        "A background task has ended; alarms are not affected"
                    );
                }
            }
            w.ended.send_replace(true);
        });
        watched
    }

    /// From now on a task that ends is stopping, not dying.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Samples every probe once a second: progress, stalls, gauges. Runs until aborted.
    pub(crate) async fn sample(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let tasks = self.tasks.lock().expect("supervisor lock").clone();
            for w in tasks {
                let Some(probe) = &w.probe else { continue };
                let (backlog, counter) = probe();
                let now = Instant::now();
                let mut state = w.state.lock().expect("task state lock");
                if counter != state.counter || backlog == 0 {
                    state.counter = counter;
                    state.progress_at = now;
                    state.progress_time = Utc::now();
                }
                state.backlog = Some(backlog);
                let waiting = if backlog == 0 { Duration::ZERO } else { now - state.progress_at };
                let label = TaskLabel { task: w.name };
                self.backlog.get_or_create(&label).set(backlog as i64);
                self.waiting.get_or_create(&label).set(waiting.as_secs() as i64);
                let stuck = state.alive && waiting >= self.stall_after;
                if stuck && !state.stuck && !self.stopping.load(Ordering::SeqCst) {
                    tracing::error!(
                        task = w.name,
                        backlog,
                        waiting_secs = waiting.as_secs(),
                        "A task is stuck with work waiting"
                    );
                    if w.critical {
                        let _ = self.failures.send(format!(
                            "{} stuck for {} s with {backlog} waiting",
                            w.name,
                            waiting.as_secs()
                        ));
                    }
                }
                state.stuck = stuck;
            }
        }
    }

    /// Whether every alarm-path task runs and none is stuck, the names of those that do not,
    /// and each task's health for `/readyz`.
    pub(crate) fn report(&self) -> (Vec<&'static str>, Value) {
        let now = Instant::now();
        let mut failing = Vec::new();
        let mut tasks = BTreeMap::new();
        for w in self.tasks.lock().expect("supervisor lock").iter() {
            let state = w.state.lock().expect("task state lock");
            let mut health = json!({ "alive": state.alive, "critical": w.critical });
            if let Some(backlog) = state.backlog {
                let waiting = if backlog == 0 { 0 } else { (now - state.progress_at).as_secs() };
                health["backlog"] = json!(backlog);
                health["last_progress"] = json!(state.progress_time);
                health["waiting_secs"] = json!(waiting);
            }
            if state.stuck {
                health["stuck"] = json!(true);
            }
            if w.critical && (!state.alive || state.stuck) {
                failing.push(w.name);
            }
            tasks.insert(w.name, health);
        }
        (failing, json!(tasks))
    }
}

impl Watched {
    /// Waits until the task has ended.
    pub(crate) async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|ended| *ended).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_alarm_path_task_is_announced_and_named_and_a_stuck_one_too() {
        let (supervisor, mut failures) = Supervisor::new(Duration::from_secs(2), &mut Registry::default());
        let live = supervisor.watch(
            "committer",
            true,
            tokio::spawn(std::future::pending()),
            Some(Box::new(|| (0, 0))),
        );
        // The engine has work waiting and never moves.
        let stuck =
            supervisor.watch("engine", true, tokio::spawn(std::future::pending()), Some(Box::new(|| (5, 7))));
        let dead = supervisor.watch("push", true, tokio::spawn(async {}), None);
        dead.ended().await;
        assert_eq!(failures.recv().await.unwrap(), "push ended");
        let (failing, tasks) = supervisor.report();
        assert_eq!(failing, ["push"]);
        assert_eq!(tasks["push"]["alive"], false);
        assert_eq!(tasks["committer"]["alive"], true);

        tokio::spawn(supervisor.clone().sample());
        let failure = tokio::time::timeout(Duration::from_secs(10), failures.recv()).await.unwrap().unwrap();
        assert!(failure.starts_with("engine stuck"), "{failure}");
        let (failing, tasks) = supervisor.report();
        assert_eq!(failing, ["engine", "push"]);
        assert_eq!(tasks["engine"]["stuck"], true);
        assert_eq!(tasks["engine"]["backlog"], 5);
        drop((live, stuck));
    }
}
