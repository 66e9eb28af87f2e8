//! The left panel: importance, tiers, granularity, groups, scope, which tensors, evaluation, Nash, run.

use eframe::egui;
use nash_swarm::importance::ImportanceMethod;
use nash_swarm::quant::tiers::ALLOWED_BITS;
use nash_swarm::quant::{Granularity, Grid, GroupSize, QuantizerKind, Scope, Tier};

use super::app::{Command, ExplorerApp};
use super::worker::JobKind;

pub fn settings_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut changed = false;
    let config = &mut app.settings.config;

    ui.heading("Importance");
    let mut method = match config.importance {
        ImportanceMethod::Magnitude => 0,
        ImportanceMethod::Swarm { .. } => 1,
        ImportanceMethod::Activation => 2,
        ImportanceMethod::Random { .. } => 3,
    };
    let before = method;
    egui::ComboBox::new("importance", "method").selected_text(config.importance.label()).show_ui(ui, |ui| {
        for (i, label) in ["magnitude", "swarm", "activation", "random (ablation)"].iter().enumerate() {
            ui.selectable_value(&mut method, i, *label);
        }
    });
    if method != before {
        config.importance = match method {
            0 => ImportanceMethod::Magnitude,
            1 => ImportanceMethod::default(),
            2 => ImportanceMethod::Activation,
            _ => ImportanceMethod::Random { seed: 0 },
        };
        changed = true;
    }
    if let ImportanceMethod::Swarm { alpha, radius } = &mut config.importance {
        changed |= ui.add(egui::Slider::new(alpha, 0.0..=1.0).text("alpha")).drag_stopped();
        changed |= ui.add(egui::Slider::new(radius, 1..=64).text("r (columns each side)")).drag_stopped();
    }

    ui.separator();
    ui.heading("Tiers");
    ui.weak("most important first; the last tier takes the rest");
    let k = config.tiers.len();
    let mut remove = None;
    for i in 0..k {
        ui.horizontal(|ui| {
            let mut percent = config.tiers[i].share * 100.0;
            let last = i + 1 == k;
            let share =
                ui.add_enabled(!last, egui::DragValue::new(&mut percent).range(0.0..=100.0).speed(0.1).suffix(" %"));
            if share.changed() {
                config.tiers[i].share = percent / 100.0;
                changed = true;
            }
            egui::ComboBox::new(("bits", i), "bits")
                .width(60.0)
                .selected_text(format!("{} bit", config.tiers[i].bits))
                .show_ui(ui, |ui| {
                    for b in ALLOWED_BITS {
                        changed |= ui.selectable_value(&mut config.tiers[i].bits, b, format!("{b} bit")).changed();
                    }
                });
            if k > 1 && ui.small_button("-").on_hover_text("remove this tier").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        config.tiers.remove(i);
        changed = true;
    }
    if ui.small_button("+ tier").clicked() {
        config.tiers.push(Tier { share: 0.0, bits: 2 });
        changed = true;
    }
    // Keep the shares summing to one: the last tier absorbs the difference.
    let head: f64 = config.tiers[..config.tiers.len() - 1].iter().map(|t| t.share).sum();
    if let Some(last) = config.tiers.last_mut() {
        last.share = (1.0 - head).max(0.0);
    }

    ui.separator();
    ui.heading("Granularity and groups");
    egui::ComboBox::new("granularity", "tiers").selected_text(format!("tier per {}", config.granularity)).show_ui(
        ui,
        |ui| {
            for g in [
                Granularity::Weight,
                Granularity::Group(32),
                Granularity::Group(64),
                Granularity::Group(128),
                Granularity::Channel,
                Granularity::Tensor,
            ] {
                changed |= ui.selectable_value(&mut config.granularity, g, format!("tier per {g}")).changed();
            }
        },
    );
    egui::ComboBox::new("group_size", "scales")
        .selected_text(format!("scale per {}", String::from(config.group_size)))
        .show_ui(ui, |ui| {
            for g in [
                GroupSize::G(32),
                GroupSize::G(64),
                GroupSize::G(128),
                GroupSize::G(256),
                GroupSize::Row,
                GroupSize::Tensor,
            ] {
                changed |=
                    ui.selectable_value(&mut config.group_size, g, format!("scale per {}", String::from(g))).changed();
            }
        });
    ui.horizontal(|ui| {
        changed |= ui.radio_value(&mut config.scope, Scope::PerTensor, "per-tensor").changed();
        changed |= ui.radio_value(&mut config.scope, Scope::Global, "global").changed();
    });
    ui.horizontal(|ui| {
        changed |= ui.radio_value(&mut config.grid, Grid::Asymmetric, "asymmetric").changed();
        changed |= ui.radio_value(&mut config.grid, Grid::Symmetric, "symmetric").changed();
    });
    egui::ComboBox::new("quantizer", "grids").selected_text(quantizer_label(config.quantizer)).show_ui(ui, |ui| {
        for q in QuantizerKind::ALL {
            changed |= ui.selectable_value(&mut config.quantizer, q, quantizer_label(q)).changed();
        }
    });
    if config.grid == Grid::Asymmetric && config.tiers.iter().any(|t| t.bits == 2) {
        ui.colored_label(
            egui::Color32::from_rgb(220, 170, 60),
            "warning: a 2-bit asymmetric grid may have no level at zero",
        );
    }

    ui.separator();
    ui.heading("Quantize");
    ui.horizontal_wrapped(|ui| {
        changed |= ui.checkbox(&mut config.quantize.attention, "attention").changed();
        changed |= ui.checkbox(&mut config.quantize.mlp, "MLP").changed();
        changed |= ui.checkbox(&mut config.quantize.embedding, "embeddings").changed();
        changed |= ui.checkbox(&mut config.quantize.lm_head, "LM head").changed();
    });
    egui::ComboBox::new("keep_bits", "kept").selected_text(format!("others at {} bit", config.keep_bits)).show_ui(
        ui,
        |ui| {
            for b in ALLOWED_BITS {
                changed |= ui.selectable_value(&mut config.keep_bits, b, format!("others at {b} bit")).changed();
            }
        },
    );
    if !config.overrides.is_empty() {
        let restores = app.settings.before_allocation.is_some();
        let mut undo = false;
        ui.horizontal(|ui| {
            ui.label(format!("{} tensors follow a Nash allocation", app.settings.config.overrides.len()));
            let tip = if restores { "back to your settings from before Allocate" } else { "drop the per-tensor plans" };
            undo = ui.small_button("undo").on_hover_text(tip).clicked();
        });
        if undo {
            app.settings.undo_allocation();
            changed = true;
        }
    }

    ui.separator();
    ui.heading("Nash allocation");
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut app.settings.target_bpw).range(1.0..=16.0).speed(0.01).suffix(" bpw"));
        if button(ui, app.model.is_some() && !app.jobs.is_running(JobKind::Allocate), "Allocate") {
            commands.push(Command::Allocate);
        }
    });
    job_progress(app, ui, JobKind::Allocate, &mut commands);

    ui.separator();
    ui.heading("Evaluate");
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut app.settings.ctx).range(16..=4096).prefix("ctx "));
        ui.add(egui::DragValue::new(&mut app.settings.eval_windows).range(1..=512).prefix("windows "));
    });
    ui.horizontal(|ui| {
        if button(ui, app.model.is_some(), "Run") {
            commands.push(Command::Run);
        }
        if button(ui, app.model.is_some() && !app.jobs.is_running(JobKind::Baselines), "Baselines") {
            commands.push(Command::Baselines);
        }
    });
    for kind in [JobKind::Load, JobKind::Analyze, JobKind::Run, JobKind::Baselines, JobKind::Export] {
        job_progress(app, ui, kind, &mut commands);
    }
    if changed {
        commands.push(Command::ConfigChanged);
    }
    commands
}

fn button(ui: &mut egui::Ui, enabled: bool, label: &str) -> bool {
    ui.add_enabled(enabled, egui::Button::new(label)).clicked()
}

/// A progress bar with the stage, the running estimate (PPL) and Cancel, while a job of this kind runs.
fn job_progress(app: &ExplorerApp, ui: &mut egui::Ui, kind: JobKind, commands: &mut Vec<Command>) {
    if !app.jobs.is_running(kind) {
        return;
    }
    let progress = app.jobs.progress(kind);
    let fraction = progress.map_or(0.0, |p| if p.total == 0 { 0.0 } else { p.done as f32 / p.total as f32 });
    let text = match progress {
        Some(p) => {
            let estimate = p.estimate.map(|e| format!(" · PPL ~{e:.2}")).unwrap_or_default();
            format!("{}: {} {}/{}{estimate}", kind.label(), p.stage, p.done, p.total)
        }
        None => format!("{}…", kind.label()),
    };
    ui.horizontal(|ui| {
        ui.add(egui::ProgressBar::new(fraction).text(text).desired_width(220.0));
        if ui.small_button("Cancel").clicked() {
            commands.push(Command::Cancel(kind));
        }
    });
}

/// What each quantizer does, in a few words (the text's activations weigh least squares and GPTQ when one is open).
fn quantizer_label(q: QuantizerKind) -> &'static str {
    match q {
        QuantizerKind::Rtn => "min-max, round to nearest",
        QuantizerKind::LeastSquares => "least squares",
        QuantizerKind::Gptq => "GPTQ (error feedback)",
    }
}
