//! Background jobs (as rerun's `background_tasks.rs`): each job runs on its own thread with a cancel token and
//! reports through a channel, waking the UI with `request_repaint`. Every job kind has a generation counter:
//! starting a job supersedes (and cancels) the previous one of its kind, and replies from a superseded
//! generation are dropped, so a stale result is never shown as current.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};

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
    pub fn label(self) -> &'static str {
        match self {
            JobKind::Load => "loading model",
            JobKind::Analyze => "importance",
            JobKind::Run => "quantize + evaluate",
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
            repaint.request_repaint();
        });
        let done = ctx.clone();
        std::thread::Builder::new()
            .name(format!("nash-swarm {}", kind.label()))
            .spawn(move || {
                let result = work(&job);
                let _ = sender.send((generation, Message::Done(result)));
                done.request_repaint();
            })
            .expect("spawning a worker thread");
        self.running.insert(kind, Running { generation, cancel, receiver, progress: None });
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

    pub fn any_running(&self) -> bool {
        !self.running.is_empty()
    }

    pub fn progress(&self, kind: JobKind) -> Option<&Progress> {
        self.running.get(&kind).and_then(|r| r.progress.as_ref())
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
                    Message::Progress(p) => running.progress = Some(p),
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
