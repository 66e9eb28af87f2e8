//! The real explorer driven by egui_kittest on stories260k: open, drag a threshold, run, cancel, export and
//! import a configuration, survive a bad file. Snapshots (wgpu, lavapipe headless) are kept in tests/snapshots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};

use super::app::{ExplorerApp, Launch};
use super::dialogs::{Dialogs, Picked, Purpose, Request, Shape};

/// A path in `../shared` beside the repository; a clear failure without it (the app would only show an error).
fn shared(path: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.is_dir(),
        "{} not found: the tests read their fixtures from `shared/` beside the repository",
        dir.display()
    );
    dir.join(path)
}

/// Dialogs answered with fixed paths inside a scratch folder; opening asks the explorer's own picker, as a
/// desktop without a portal would.
struct TestDialogs(PathBuf);

impl Dialogs for TestDialogs {
    fn pick(&self, request: &Request) -> Picked {
        match (&request.purpose, &request.shape) {
            (Purpose::ImportConfig, _) => Picked::Chosen(self.0.join("quantization.toml")),
            (_, Shape::SaveFile { default_name }) => Picked::Chosen(self.0.join(default_name)),
            (_, Shape::SaveFolder { .. }) => Picked::Chosen(self.0.join("model")),
            _ => Picked::Unavailable("no desktop portal in the test".into()),
        }
    }
}

fn harness(model: PathBuf, scratch: &Path) -> Harness<'static, ExplorerApp> {
    harness_scaled(model, scratch, egui::vec2(1480.0, 920.0), 1.0)
}

/// The explorer in a window of `size` points at `scale` pixels per point.
fn harness_scaled(model: PathBuf, scratch: &Path, size: egui::Vec2, scale: f32) -> Harness<'static, ExplorerApp> {
    let scratch = scratch.to_path_buf();
    let launch = Launch {
        model: Some(model),
        text: Some(shared("data/wikitext-2-raw/wiki.test.raw")),
        dialogs: Box::new(TestDialogs(scratch)),
        show_frame_time: false,
    };
    Harness::builder()
        .with_size(size)
        .with_pixels_per_point(scale)
        .with_max_steps(10_000)
        .build_eframe(move |cc| ExplorerApp::new(cc, launch))
}

/// Steps frames until no background job runs (jobs are real threads: wait in real time).
fn settle(harness: &mut Harness<'static, ExplorerApp>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while harness.state().jobs.any_running() {
        assert!(Instant::now() < deadline, "a background job did not finish");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
    harness.run_steps(4);
}

fn stories() -> PathBuf {
    shared("fixtures/stories260k")
}

fn snapshot(harness: &mut Harness<'static, ExplorerApp>, name: &str) {
    // Text antialiasing may differ by a few pixels between GPUs; the layout may not.
    harness.snapshot_options(name, &SnapshotOptions::new().threshold(1.0).max_failed_pixels(200));
}

/// Opens a menu of the top bar and clicks one of its items.
fn menu(harness: &mut Harness<'static, ExplorerApp>, menu: &str, item: &str) {
    harness.get_by_label(menu).click();
    harness.run_steps(2);
    harness.get_by_label(item).click();
    harness.run_steps(2);
}

/// A copy of stories260k in `dir/model`, for tests that write beside the model or change its files.
fn copy_of_stories(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(stories()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    model
}

fn tier_shares(harness: &Harness<'static, ExplorerApp>) -> Vec<f64> {
    harness.state().settings.config.tiers.iter().map(|t| t.share).collect()
}

#[test]
fn opens_a_model_and_dragging_a_threshold_updates_the_bits_live() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    assert!(harness.state().analysis.is_some(), "importance is ready");
    assert!(harness.state().model.as_ref().unwrap().param_count() == 260_032);
    let before = harness.state().estimate.clone().unwrap();
    harness.get_by_label_contains("payload 3.000 bpw");
    snapshot(&mut harness, "explorer_loaded");

    // Drag the first threshold (top tier) to the left: more weights in the 8-bit tier, more bits.
    let rect = harness.state().histogram.plot_rect.unwrap();
    let x = harness.state().histogram.line_x[0];
    let (from, to) = (egui::pos2(x, rect.center().y), egui::pos2(x - 60.0, rect.center().y));
    harness.hover_at(from);
    harness.step();
    harness.drag_at(from);
    harness.step();
    // One large first step, as a quick hand makes: the line is picked where the button went down.
    for i in [3.0, 4.0, 5.0, 6.0] {
        harness.hover_at(from + (to - from) * (i / 6.0));
        harness.step();
    }
    harness.drop_at(to);
    harness.run_steps(3);
    let after = harness.state().estimate.clone().unwrap();
    let shares = tier_shares(&harness);
    assert!(shares[0] > 0.1 + 0.01, "the top tier grew: {shares:?}");
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(after.payload_bpw > before.payload_bpw + 0.05, "{} -> {}", before.payload_bpw, after.payload_bpw);
    assert!(after.true_bpw > before.true_bpw);
    harness.get_by_label_contains(&format!("payload {:.3} bpw", after.payload_bpw));
    snapshot(&mut harness, "explorer_dragged");
}

#[test]
fn a_run_adds_a_row_and_a_click_restores_its_configuration() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.ctx = 128;
    harness.get_by_label("Run").click();
    harness.step();
    assert!(harness.state().jobs.is_running(super::worker::JobKind::Run));
    settle(&mut harness);
    let state = harness.state();
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    assert_eq!(state.runs.len(), 1);
    let run = &state.runs[0];
    assert!(run.ppl.is_finite() && run.ppl > 1.0 && run.kld.mean > 0.0);
    assert!(!state.detail.is_empty(), "per-tensor results feed the heatmap");
    harness.get_by_label("run 1");
    snapshot(&mut harness, "explorer_results");

    // The run's point in the Pareto plot names it under the pointer, and a click picks its row.
    let (name, at) = harness.state().table.points[0].clone();
    assert_eq!(name, "run 1");
    harness.hover_at(at);
    harness.run_steps(2);
    let run = &harness.state().runs[0];
    let number = super::readable::number;
    harness.get_by_label_contains(&format!("run 1: {} bpw · PPL {}", number(run.bits.true_bpw), number(run.ppl)));
    harness.drag_at(at);
    harness.drop_at(at);
    harness.run_steps(2);
    assert_eq!(harness.state().table.picked.as_deref(), Some("run 1"));

    // Change the configuration, then restore the run's.
    let original = harness.state().settings.config.clone();
    harness.state_mut().settings.config.tiers[0].share = 0.3;
    harness.state_mut().settings.config.tiers[2].share = 0.5;
    harness.run_steps(2);
    harness.get_by_label("run 1").click();
    harness.run_steps(2);
    assert_eq!(harness.state().settings.config, original);

    // A second run at 4 bits everywhere; marking both shows where their bits differ.
    harness.state_mut().settings.config =
        nash_swarm::quant::QuantConfig::uniform(4, nash_swarm::quant::GroupSize::G(32));
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::R);
    harness.step();
    settle(&mut harness);
    assert_eq!(harness.state().runs.len(), 2);
    assert_eq!(harness.get_all_by_label("vs").count(), 2, "each run can be marked");
    for k in 0..2 {
        harness.get_all_by_label("vs").nth(k).unwrap().click();
        harness.run_steps(2);
    }
    let state = harness.state();
    assert_eq!(state.table.compared, vec![0, 1]);
    assert_eq!(state.settings.metric, super::state::Metric::BitsDifference);
    let (first, second) = (&state.runs[0].detail, &state.runs[1].detail);
    for (name, d) in first.iter() {
        let expected = (d.bits_per_weight - second[name].bits_per_weight) as f32;
        let shown = super::heatmap_ui::metric_value(state, name).unwrap();
        assert!((shown - expected).abs() < 1e-5, "{name}: {shown} vs {expected}");
    }
    harness.get_by_label("run 1 minus run 2");
    snapshot(&mut harness, "explorer_compare");
}

#[test]
fn a_run_can_be_cancelled_and_leaves_no_row() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.eval_windows = 400; // long enough to be caught running
    harness.get_by_label("Run").click();
    harness.run_steps(2);
    assert!(harness.state().jobs.is_running(super::worker::JobKind::Run));
    harness.get_by_label("Cancel").click();
    harness.step();
    assert!(!harness.state().jobs.any_running());
    std::thread::sleep(Duration::from_millis(300));
    harness.run_steps(4);
    assert!(harness.state().runs.is_empty(), "a cancelled run is not shown");
    assert_eq!(harness.state().notices.last().map(String::as_str), Some("run cancelled"));

    // The keyboard does the same: Ctrl+R runs, Escape cancels every job.
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::R);
    harness.run_steps(2);
    assert!(harness.state().jobs.is_running(super::worker::JobKind::Run));
    harness.key_press(egui::Key::Escape);
    harness.step();
    assert!(!harness.state().jobs.any_running());
    assert!(harness.state().problems.is_empty(), "{:?}", harness.state().problems);
}

#[test]
fn a_configuration_exports_and_imports_again() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.config.tiers[0].share = 0.2;
    harness.state_mut().settings.config.tiers[2].share = 0.6;
    let exported = harness.state().settings.config.clone();
    menu(&mut harness, "Export", "Configuration…");
    let written = nash_swarm::quant::QuantConfig::read(&scratch.path().join("quantization.toml")).unwrap();
    assert_eq!(written, exported);

    harness.state_mut().settings.config =
        nash_swarm::quant::QuantConfig::uniform(3, nash_swarm::quant::GroupSize::G(64));
    menu(&mut harness, "Open", "Configuration…");
    assert_eq!(harness.state().settings.config, exported);
}

#[test]
fn a_bad_model_shows_its_error_in_the_window() {
    let scratch = tempfile::tempdir().unwrap();
    let broken = scratch.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{ not json").unwrap();
    let mut harness = harness(broken.clone(), scratch.path());
    settle(&mut harness);
    let problems = harness.state().problems.join("\n");
    assert!(problems.contains("config.json") && problems.contains("malformed JSON"), "{problems}");
    harness.get_by_label_contains("malformed JSON");
    harness.get_by_label("Open model file… (.gguf)");
}

#[test]
fn exporting_into_the_open_models_folder_is_refused_and_the_model_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    // The dialog answers `scratch/model`, which is where the model itself lives.
    let model = copy_of_stories(scratch.path());
    let contents = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = contents(&model);
    let mut harness = harness(model.clone(), scratch.path());
    settle(&mut harness);
    menu(&mut harness, "Export", "Quantized model (packed folder)…");
    settle(&mut harness);
    let problems = harness.state().problems.join("\n");
    assert!(problems.contains("the export folder") && problems.contains("is the model"), "{problems}");
    harness.get_by_label_contains("is the model");
    // The fp16 Hugging Face export refuses the same place.
    harness.state_mut().problems.clear();
    menu(&mut harness, "Export", "Hugging Face fp16 folder…");
    let problems = harness.state().problems.join("\n");
    assert!(problems.contains("the Hugging Face folder") && problems.contains("is the model"), "{problems}");
    assert!(!harness.state().jobs.any_running(), "nothing started");
    assert_eq!(contents(&model), before, "the model's files are unchanged");
    let names: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model")], "nothing else was written");
}

#[test]
fn a_gguf_export_is_written_and_opens_again() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    menu(&mut harness, "Export", "GGUF for llama.cpp");
    harness.get_by_label("q8_0").click();
    harness.run_steps(2);
    settle(&mut harness);
    assert!(harness.state().problems.is_empty(), "{:?}", harness.state().problems);
    let notice = harness.state().notices.join("\n");
    assert!(notice.contains("GGUF q8_0") && notice.contains("bits per parameter"), "{notice}");
    let written = scratch.path().join("stories260k-q8_0.gguf");
    let model = nash_swarm::load(&written).unwrap();
    assert_eq!(model.stored_dtypes["model.layers.0.mlp.up_proj.weight"], "Q8_0");
}

#[test]
fn a_measured_allocation_shows_its_prices_in_the_heatmap_the_plot_and_the_table() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.ctx = 128;
    harness.state_mut().settings.target_bpw = 5.0;
    harness.get_by_label("Allocate").click();
    harness.step();
    settle(&mut harness);
    let state = harness.state();
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    let allocation = state.allocation.clone().expect("allocated");
    let sensitivity = allocation.sensitivity.clone().expect("a text is open: measured prices");
    assert!(sensitivity.spearman > 0.5, "held-out Spearman {}", sensitivity.spearman);
    assert_eq!(allocation.predicted_kld.len(), allocation.bits.len());
    // Every heatmap cell has a sensitivity and a predicted ΔKLD.
    for metric in [super::state::Metric::Sensitivity, super::state::Metric::PredictedKld] {
        harness.state_mut().settings.metric = metric;
        let state = harness.state();
        let cells: Vec<&String> = state
            .analysis
            .as_ref()
            .unwrap()
            .tensors
            .iter()
            .filter(|(_, t)| t.layer.is_some())
            .map(|(n, _)| n)
            .collect();
        assert!(!cells.is_empty());
        assert!(cells.iter().all(|n| super::heatmap_ui::metric_value(state, n).is_some_and(f32::is_finite)));
    }
    harness.run_steps(2);
    // The Pareto plot shows the predicted KLD along the budget; the Sensitivity tab the held-out pairs.
    assert_eq!(harness.state().table.loss, super::results_ui::Loss::Kld);
    harness.get_by_label("predicted by the allocation");
    harness.get_by_label("Sensitivity").click();
    harness.run_steps(2);
    harness.get_by_label_contains("held-out pairs, Spearman");
    snapshot(&mut harness, "explorer_sensitivity");

    // Dragging the budget re-solves the allocation at once: fewer bits, the heatmap recoloured by bits, the
    // marker on the predicted curve.
    harness.state_mut().settings.metric = super::state::Metric::MeanImportance;
    let before = harness.state().allocation.clone().unwrap();
    let bits_before: f64 = before.bits.values().sum();
    assert!(!before.predicted_curve.is_empty(), "measured prices give a predicted curve");
    let (lo, _) = before.range;
    let target = (lo + 0.5).min(4.0);
    // The slider and its value field share the label; either sets the budget.
    harness.get_all_by_label("target").next().unwrap().set_value_accesskit(target);
    harness.run_steps(2);
    let state = harness.state();
    let after = state.allocation.clone().unwrap();
    assert!((after.target_bpw - target).abs() < 0.011, "{} -> {}", after.target_bpw, target);
    assert!(after.bits.values().sum::<f64>() < bits_before, "a smaller budget, fewer bits");
    assert!(after.total_price > before.total_price, "and more predicted loss");
    assert_eq!(state.settings.config, after.config, "Run would use the new allocation");
    assert_eq!(state.settings.metric, super::state::Metric::AssignedBits);
    let estimated = &state.estimate.as_ref().unwrap().tensors;
    for (name, bits) in &after.bits {
        let shown = super::heatmap_ui::metric_value(state, name).unwrap() as f64;
        assert!((shown - bits).abs() < 0.05 * bits, "{name}: heatmap {shown} vs allocation {bits}");
        assert!((estimated[name].bits_per_weight - bits).abs() < 0.05 * bits);
    }

    // A run of the allocated configuration says how it was priced.
    harness.get_by_label("Run").click();
    harness.step();
    settle(&mut harness);
    let run = &harness.state().runs[0];
    assert!(run.prices.as_deref().is_some_and(|p| p.starts_with("measured ΔKLD prices")), "{:?}", run.prices);
    assert!(run.config.overrides.values().all(|plan| plan.quantizer == nash_swarm::quant::QuantizerKind::LeastSquares));
}

#[test]
fn the_other_architectures_open_run_and_show_their_own_columns() {
    // Phi-3 (fused projections: one `qkv` and one `gate_up` column), Gemma 3 (sandwich norms, sliding layers).
    let phi3 = ["qkv", "o", "gate_up", "down"];
    let gemma3 = ["q", "k", "v", "o", "gate", "up", "down"];
    // Qwen2 is stored in bf16 and held so.
    let fixtures = [
        ("fixtures/tiny-phi3-random", &phi3[..]),
        ("fixtures/tiny-gemma3-random", &gemma3),
        ("fixtures/tiny-qwen2-random", &gemma3),
    ];
    for (fixture, columns) in fixtures {
        let scratch = tempfile::tempdir().unwrap();
        let mut harness = harness(shared(fixture), scratch.path());
        settle(&mut harness);
        let analysis = harness.state().analysis.clone().expect("the model is analysed");
        assert_eq!(analysis.kinds, columns, "{fixture}");
        harness.state_mut().settings.ctx = 48;
        harness.get_by_label("Run").click();
        harness.step();
        settle(&mut harness);
        let state = harness.state();
        assert!(state.problems.is_empty(), "{fixture}: {:?}", state.problems);
        assert_eq!(state.runs.len(), 1, "{fixture}");
        assert!(state.runs[0].ppl.is_finite() && state.runs[0].ppl > 1.0, "{fixture}");
    }
}

#[test]
fn an_allocation_made_for_another_model_is_not_applied_to_this_one() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    // As if restored from a session where another model was open and allocated; then a model is opened.
    let plan = nash_swarm::quant::TensorPlan::uniform(4, nash_swarm::quant::GroupSize::G(32), Default::default());
    let settings = &mut harness.state_mut().settings;
    settings.config.overrides.insert("model.layers.29.mlp.down_proj.weight".into(), plan);
    let elsewhere = PathBuf::from("/elsewhere/SmolLM2.gguf");
    settings.overrides_made_for =
        Some(super::state::ModelIdentity { path: elsewhere, digest: "made for SmolLM2".into() });
    harness.get_by_label("Open").click();
    harness.run_steps(2);
    harness.get_by_label("stories260k").click();
    harness.step();
    settle(&mut harness);
    let state = harness.state();
    assert!(state.settings.config.overrides.is_empty());
    assert!(state.notices.iter().any(|n| n.contains("/elsewhere/SmolLM2.gguf") && n.contains("not applied")));
}

#[test]
fn undo_after_allocate_brings_the_users_settings_back() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.config.tiers[0].share = 0.25;
    harness.state_mut().settings.config.tiers[2].share = 0.55;
    let mine = harness.state().settings.config.clone();
    harness.get_by_label("Allocate").click();
    harness.step();
    settle(&mut harness);
    assert!(!harness.state().settings.config.overrides.is_empty());
    assert_ne!(harness.state().settings.config, mine);
    harness.get_by_label("Undo allocation").click();
    harness.run_steps(2);
    assert_eq!(harness.state().settings.config, mine);
    assert!(harness.state().settings.before_allocation.is_none());
}

#[test]
fn the_heatmap_fills_in_while_importance_runs_and_the_histograms_come_at_the_end() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    let model = nash_swarm::load(&stories()).unwrap();
    let arriving = Arc::new(Mutex::new(BTreeMap::new()));
    // Each progress report follows its tensor's cell: the shared map holds as many cells as were reported.
    let seen = arriving.clone();
    let counts = Arc::new(Mutex::new(Vec::new()));
    let recorded = counts.clone();
    let job = nash_swarm::Job::new(Default::default(), move |p: &nash_swarm::Progress| {
        let cells = seen.lock().unwrap().len() as u64;
        recorded.lock().unwrap().push((p.done, cells));
    });
    let method = nash_swarm::importance::ImportanceMethod::Magnitude;
    let analysis = super::analysis::analyze(&model, &method, None, &job, &arriving).unwrap();
    let counts = counts.lock().unwrap();
    assert!(counts.len() > 2 && counts.iter().all(|(done, cells)| cells >= done), "{counts:?}");
    assert_eq!(analysis.tensors.len(), super::analysis::matrices(&model).len());
    assert!(arriving.lock().unwrap().is_empty(), "the cells moved into the finished analysis");
    let index = analysis.index.as_ref().expect("histograms once every tensor is scored");
    let total: u64 = index.histogram(None).iter().map(|&c| c as u64).sum();
    let weights: usize = analysis.tensors.values().map(|t| t.rows * t.cols).sum();
    assert_eq!(total, weights as u64, "every weight in the histograms");
    // A partial analysis has the model's full grid, so cells fill in where they belong.
    let partial = super::analysis::Analysis::arriving(&model, &method, BTreeMap::new());
    assert_eq!((partial.kinds.clone(), partial.layers), (analysis.kinds.clone(), analysis.layers));
}

/// A path dropped on the window, as the windowing layer hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn without_a_desktop_portal_the_explorers_own_picker_opens_a_model_and_says_why() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.get_by_label("Open").click();
    harness.run_steps(2);
    // The item's label carries its shortcut.
    harness.get_by_label_contains("Model folder…").click();
    harness.run_steps(3);
    assert!(harness.state().picker.is_some(), "the explorer's picker opened");
    harness.get_by_label_contains("could not open (no desktop portal in the test)");
    // Type the start of a folder's name: Tab completes it, Enter opens it.
    let fixtures = shared("fixtures");
    let field = harness.get_by_label("path");
    field.focus();
    harness.run_steps(1);
    harness.get_by_label("path").set_text_value_accesskit(&format!("{}/tiny-", fixtures.display()));
    harness.run_steps(2);
    // The listing shows the folder's matching entries, model folders marked.
    harness.get_by_label("tiny-gemma3-random/   (model folder)");
    harness.get_by_label("path").set_text_value_accesskit(&format!("{}/tiny-ph", fixtures.display()));
    harness.run_steps(2);
    harness.key_press(egui::Key::Tab);
    harness.run_steps(2);
    let typed = harness.state().picker.as_ref().unwrap().typed.clone();
    assert_eq!(typed, format!("{}/tiny-phi3-random/", fixtures.display()), "Tab completed the only match");
    harness.get_by_label("Open this folder").click();
    harness.run_steps(2);
    settle(&mut harness);
    let state = harness.state();
    assert!(state.picker.is_none());
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    assert_eq!(state.model.as_ref().unwrap().source, fixtures.join("tiny-phi3-random/"));

    // The system's dialog is not tried again: the next Open goes straight to the picker, and Cancel closes it.
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
    harness.run_steps(2);
    assert!(harness.state().picker.is_some(), "Ctrl+O opens the picker");
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert!(harness.state().picker.is_none());
}

#[test]
fn a_folder_dropped_on_the_window_opens_and_a_dropped_configuration_is_imported() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    let config = nash_swarm::quant::QuantConfig::uniform(3, nash_swarm::quant::GroupSize::G(64));
    let path = scratch.path().join("mine.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    harness.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(path)));
    harness.run_steps(2);
    assert_eq!(harness.state().settings.config, config);
    let gemma = shared("fixtures/tiny-gemma3-random");
    harness.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(gemma.clone())));
    harness.step();
    settle(&mut harness);
    assert_eq!(harness.state().model.as_ref().unwrap().source, gemma);
}

#[test]
fn baselines_stream_in_row_by_row_and_every_header_fits_at_1280x720() {
    let scratch = tempfile::tempdir().unwrap();
    let mut harness = harness(stories(), scratch.path());
    settle(&mut harness);
    harness.state_mut().settings.ctx = 64;
    harness.state_mut().settings.eval_windows = 2;
    harness.get_by_label("Baselines").click();
    harness.step();
    let planned = nash_swarm::compare::planned_rows(&harness.state().baseline_spec());
    // Rows show while the job still runs, and the status line counts them.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen_while_running = 0;
    while harness.state().jobs.any_running() {
        assert!(Instant::now() < deadline, "Baselines did not finish");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
        if harness.state().jobs.any_running() && harness.state().baselines.len() > 2 {
            seen_while_running = harness.state().baselines.len();
            harness.get_by_label_contains(&format!("of {planned}"));
        }
    }
    harness.run_steps(4);
    assert!(seen_while_running > 2, "rows arrived before the job ended");
    let state = harness.state();
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    assert_eq!(state.baselines.len(), planned, "compare::planned_rows counts compare's rows");
    assert!(state.baselines.iter().any(|r| r.method.starts_with("gguf-q4_k_m")), "llama.cpp presets are baselines");
    assert!(state.notices.last().unwrap().starts_with("baselines finished"));
    // The window shrinks from 1480x920 to 1280x720 with the table filled: every column header stays inside the
    // window, left of the plot beside the table.
    harness.set_size(egui::vec2(1280.0, 720.0));
    harness.run_steps(4);
    let plot_left = harness.get_by_label("Pareto").rect().left();
    let results_top = harness.get_by_label("Results").rect().top();
    let window = egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(plot_left, 720.0));
    for header in ["method", "made by", "configuration", "bpw", "size MB", "PPL", "ΔPPL", "KLD", "top-1"] {
        // PPL and KLD are also the plot's axis toggles (right of the table), "method" a setting (above it).
        let in_table = |r: &egui::Rect| r.left() < plot_left && r.top() > results_top;
        let rects: Vec<egui::Rect> = harness.get_all_by_label(header).map(|n| n.rect()).filter(in_table).collect();
        assert_eq!(rects.len(), 1, "one {header} header in the table");
        assert!(window.contains_rect(rects[0]), "{header} at {:?} is outside the table's room", rects[0]);
    }
    // The least-squares and GPTQ rows are calibrated by forward passes whose GEMM kernels differ by CPU (AVX-512
    // on one machine, AVX2 on another), which moves their last digits: those few cells may differ, the layout not.
    let digits_that_vary = SnapshotOptions::new().threshold(1.0).max_failed_pixels(1500);
    harness.snapshot_options("explorer_baselines_1280x720", &digits_that_vary);
}

#[test]
fn an_allocation_stays_with_its_model_and_not_with_another_file_at_the_same_path() {
    let scratch = tempfile::tempdir().unwrap();
    let model = copy_of_stories(scratch.path());
    let mut harness = harness(model.clone(), scratch.path());
    settle(&mut harness);
    let plan = nash_swarm::quant::TensorPlan::uniform(4, nash_swarm::quant::GroupSize::G(32), Default::default());
    let state = harness.state_mut();
    state.settings.config.overrides.insert("model.layers.0.mlp.down_proj.weight".into(), plan);
    state.settings.overrides_made_for = state.identity.clone();
    let reopen = |harness: &mut Harness<'static, ExplorerApp>| {
        menu(harness, "Open", "model");
        settle(harness);
    };
    reopen(&mut harness);
    assert_eq!(harness.state().settings.config.overrides.len(), 1, "the same model keeps its allocation");
    // Another file at the same place (here: its config.json rewritten) is another model.
    let config = model.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n")).unwrap();
    reopen(&mut harness);
    let state = harness.state();
    assert!(state.settings.config.overrides.is_empty());
    assert!(
        state.notices.iter().any(|n| n.contains("an earlier file at") && n.contains("not applied")),
        "{:?}",
        state.notices
    );
}

#[test]
fn at_twice_the_scale_on_a_1920x1080_screen_everything_is_reachable() {
    // 960x540 points: the table and the plots become tabs, the panels scroll, nothing is cut off.
    let scratch = tempfile::tempdir().unwrap();
    let size = egui::vec2(960.0, 540.0);
    let mut harness = harness_scaled(stories(), scratch.path(), size, 2.0);
    settle(&mut harness);
    harness.state_mut().settings.ctx = 64;
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::R);
    harness.step();
    settle(&mut harness);
    assert_eq!(harness.state().runs.len(), 1);
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
    for label in ["Open", "Export", "Table", "Pareto"] {
        let rect = harness.get_by_label(label).rect();
        assert!(window.contains_rect(rect), "{label} at {rect:?} is outside the window");
    }
    harness.get_by_label("Table").click();
    harness.run_steps(2);
    snapshot(&mut harness, "explorer_960x540_at_2x");
    let rect = harness.get_by_label("run 1").rect();
    assert!(window.contains_rect(rect), "the run's row at {rect:?} is outside the window");
    snapshot(&mut harness, "explorer_960x540_at_2x");
}

#[test]
fn the_quantized_model_exports_packed_and_as_hugging_face_fp16_and_both_open_again() {
    for (item, format) in [("Quantized model (packed folder)…", "packed"), ("Hugging Face fp16 folder…", "fp16")] {
        let scratch = tempfile::tempdir().unwrap();
        let mut harness = harness(stories(), scratch.path());
        settle(&mut harness);
        menu(&mut harness, "Export", item);
        settle(&mut harness);
        let state = harness.state();
        assert!(state.problems.is_empty(), "{format}: {:?}", state.problems);
        assert!(state.notices.last().unwrap().contains("written to"), "{format}: {:?}", state.notices);
        let written = nash_swarm::load(&scratch.path().join("model")).unwrap();
        assert_eq!(written.param_count(), state.model.as_ref().unwrap().param_count(), "{format}");
    }
}
