//! Background jobs (as rerun's `background_tasks.rs`): each job runs on its own thread with a cancel token and
//! reports through a channel, waking the UI with `request_repaint`. Every job kind has a generation counter:
//! starting a job supersedes (and cancels) the previous one of its kind, and replies from a superseded
//! generation are dropped, so a stale result is never shown as current.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use eframe::egui;
use nash_swarm::{CancelToken, Job, Progress};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobKind {
    Load,
    Analyze,
    Run,
    Allocate,
    Baselines,
    Export,
}

impl JobKind {
    fn quantizes(self) -> bool {
        matches!(self, JobKind::Run | JobKind::Allocate | JobKind::Baselines | JobKind::Export)
    }

    /// The job's name at the head of its status line.
    pub fn title(self) -> &'static str {
        match self {
            JobKind::Load => "Loading",
            JobKind::Analyze => "Importance",
            JobKind::Run => "Run",
            JobKind::Allocate => "Allocate",
            JobKind::Baselines => "Baselines",
            JobKind::Export => "Export",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            JobKind::Load => "loading model",
            JobKind::Analyze => "importance",
            JobKind::Run => "run",
            JobKind::Allocate => "Nash allocation",
            JobKind::Baselines => "baselines",
            JobKind::Export => "export",
        }
    }
}

pub enum Message<T> {
    Progress(Progress),
    Done(anyhow::Result<T>),
}

struct Running<T> {
    generation: u64,
    cancel: CancelToken,
    receiver: Receiver<(u64, Message<T>)>,
    progress: Option<Progress>,
    started: Instant,
    /// When the current stage began: its pace predicts the time it has left.
    stage_started: Instant,
}

/// A running job as its status line shows it.
pub struct Status<'a> {
    pub progress: Option<&'a Progress>,
    pub elapsed: Duration,
    /// The current stage's remaining time, from its pace so far.
    pub stage_left: Option<Duration>,
}

/// Jobs whose results are of type `T`, by kind.
pub struct Jobs<T> {
    running: BTreeMap<JobKind, Running<T>>,
    next_generation: u64,
}

impl<T: Send + 'static> Default for Jobs<T> {
    fn default() -> Self {
        Jobs { running: BTreeMap::new(), next_generation: 1 }
    }
}

impl<T: Send + 'static> Jobs<T> {
    /// Starts `work` on a thread, superseding any running job of the same kind.
    pub fn spawn(
        &mut self,
        ctx: &egui::Context,
        kind: JobKind,
        work: impl FnOnce(&Job) -> anyhow::Result<T> + Send + 'static,
    ) {
        self.cancel(kind);
        let generation = self.next_generation;
        self.next_generation += 1;
        let (sender, receiver): (Sender<(u64, Message<T>)>, _) = channel();
        let cancel = CancelToken::default();
        let progress_sender = sender.clone();
        let repaint = ctx.clone();
        let job = Job::new(cancel.clone(), move |p| {
            let _ = progress_sender.send((generation, Message::Progress(p.clone())));
            // Coalesced: a job reporting hundreds of steps a second must not draw hundreds of frames.
            repaint.request_repaint_after(std::time::Duration::from_millis(100));
        });
        let done = ctx.clone();
        std::thread::Builder::new()
            .name(format!("nash-swarm {}", kind.label()))
            .spawn(move || {
                let result = (|| {
                    // Jobs that quantize the whole model take turns: two at once would hold two quantized copies
                    // (and gain nothing on two cores).
                    let _turn = if kind.quantizes() { Some(wait_turn(&job)?) } else { None };
                    work(&job)
                })();
                release_freed_memory();
                let _ = sender.send((generation, Message::Done(result)));
                done.request_repaint();
            })
            .expect("spawning a worker thread");
        let now = Instant::now();
        self.running
            .insert(kind, Running { generation, cancel, receiver, progress: None, started: now, stage_started: now });
    }

    /// Asks the running job of this kind to stop; it is forgotten at once, whatever it still sends.
    pub fn cancel(&mut self, kind: JobKind) {
        if let Some(running) = self.running.remove(&kind) {
            running.cancel.cancel();
        }
    }

    pub fn is_running(&self, kind: JobKind) -> bool {
        self.running.contains_key(&kind)
    }

    pub fn running_kinds(&self) -> Vec<JobKind> {
        self.running.keys().copied().collect()
    }

    pub fn any_running(&self) -> bool {
        !self.running.is_empty()
    }

    pub fn status(&self, kind: JobKind) -> Option<Status<'_>> {
        let running = self.running.get(&kind)?;
        let progress = running.progress.as_ref();
        let stage_left = progress
            .filter(|p| p.done > 0 && p.total > p.done)
            .map(|p| running.stage_started.elapsed().mul_f64((p.total - p.done) as f64 / p.done as f64));
        Some(Status { progress, elapsed: running.started.elapsed(), stage_left })
    }

    /// Finished jobs of the current generations; progress is kept for display.
    pub fn poll(&mut self) -> Vec<(JobKind, anyhow::Result<T>)> {
        let mut finished = Vec::new();
        for (kind, running) in self.running.iter_mut() {
            while let Ok((generation, message)) = running.receiver.try_recv() {
                if generation != running.generation {
                    continue; // a superseded job's late words
                }
                match message {
                    Message::Progress(p) => {
                        if running.progress.as_ref().is_none_or(|old| old.stage != p.stage) {
                            running.stage_started = Instant::now();
                        }
                        running.progress = Some(p);
                    }
                    Message::Done(result) => finished.push((*kind, result)),
                }
            }
        }
        for (kind, _) in &finished {
            self.running.remove(kind);
        }
        finished
    }
}

/// Returns memory freed by a finished job to the system. glibc keeps freed blocks in its arena, so after a run
/// the window would otherwise hold hundreds of MB it no longer uses, and the next job would stack on top.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Large buffers (a layer's activations, a block of logits, a tensor's scores) get their own mappings, returned
/// to the system when freed, instead of glibc's adaptive threshold moving them into arenas that keep them: the
/// window lives long and runs many jobs, so its peak memory matters more than a few page faults.
pub fn return_large_blocks_at_once() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any worker thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

static QUANTIZING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until no other quantizing job runs; a cancel while waiting ends the job.
fn wait_turn(job: &Job) -> anyhow::Result<std::sync::MutexGuard<'static, ()>> {
    loop {
        match QUANTIZING.try_lock() {
            Ok(turn) => return Ok(turn),
            Err(std::sync::TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                job.checkpoint()?;
                job.report("waiting for the other job", 0, 1, None);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
