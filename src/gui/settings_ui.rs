//! The left panel: importance, tiers, grids, which tensors, the bit budget (Nash allocation), evaluation. Every
//! control has a label and a one-sentence tooltip; a problem with the configuration shows beside the tiers.

use eframe::egui;
use nash_swarm::importance::ImportanceMethod;
use nash_swarm::quant::tiers::ALLOWED_BITS;
use nash_swarm::quant::{Granularity, Grid, GroupSize, QuantConfig, QuantizerKind, Scope, Tier};

use super::app::{Command, ExplorerApp, PROBLEM_COLOR};
use super::palette;
use super::readable::number;
use super::worker::JobKind;

const WARNING_COLOR: egui::Color32 = egui::Color32::from_rgb(220, 170, 60);

pub fn settings_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut changed = importance_ui(&mut app.settings.config, ui);
    ui.separator();
    let allocated = !app.settings.config.overrides.is_empty();
    if allocated {
        changed |= allocation_layer_ui(app, ui);
        // Every matrix follows its own plan: the user's settings wait underneath, shown as they were.
        let mut yours = app.settings.before_allocation.clone().unwrap_or_else(|| app.settings.config.clone());
        ui.add_enabled_ui(false, |ui| {
            tiers_ui(&mut yours, ui);
            ui.separator();
            grids_ui(&mut yours, ui);
            ui.separator();
            roles_ui(&mut yours, ui);
        });
    } else {
        changed |= tiers_ui(&mut app.settings.config, ui);
        if let Some(problem) = app.config_problem() {
            ui.colored_label(PROBLEM_COLOR, problem);
        }
        ui.separator();
        changed |= grids_ui(&mut app.settings.config, ui);
        ui.separator();
        changed |= roles_ui(&mut app.settings.config, ui);
    }
    ui.separator();
    budget_ui(app, ui, &mut commands);
    ui.separator();
    evaluate_ui(app, ui, &mut commands);
    if changed {
        commands.push(Command::ConfigChanged);
    }
    commands
}

fn importance_ui(config: &mut QuantConfig, ui: &mut egui::Ui) -> bool {
    let mut changed = false;
    ui.heading("Importance").on_hover_text("how much each weight matters; the top tiers take the most important");
    let mut method = match config.importance {
        ImportanceMethod::Magnitude => 0,
        ImportanceMethod::Swarm { .. } => 1,
        ImportanceMethod::Activation => 2,
        ImportanceMethod::Random { .. } => 3,
    };
    let before = method;
    egui::ComboBox::new("importance", "method")
        .selected_text(config.importance.label())
        .show_ui(ui, |ui| {
            let methods = [
                ("magnitude", "|w|: large weights matter"),
                ("swarm", "|w| smoothed over neighbouring columns (alpha blends, r columns each side)"),
                ("activation", "|w| × the input's RMS on the evaluation text's end (needs a text)"),
                ("random (ablation)", "random scores: what importance is worth, by contrast"),
            ];
            for (i, (label, tip)) in methods.iter().enumerate() {
                ui.selectable_value(&mut method, i, *label).on_hover_text(*tip);
            }
        })
        .response
        .on_hover_text("how each weight's importance is scored");
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
        let alpha = ui.add(egui::Slider::new(alpha, 0.0..=1.0).text("alpha"));
        changed |= alpha.on_hover_text("weight of the neighbours' mean against the weight's own |w|").drag_stopped();
        let radius = ui.add(egui::Slider::new(radius, 1..=64).text("r (columns each side)"));
        changed |= radius.on_hover_text("how many columns on each side count as neighbours").drag_stopped();
    }
    changed
}

fn tier_name(i: usize, k: usize) -> String {
    match i {
        0 if k > 1 => "tier 1 (most important)".into(),
        _ if i + 1 == k => format!("tier {} (the rest)", i + 1),
        _ => format!("tier {}", i + 1),
    }
}

fn tiers_ui(config: &mut QuantConfig, ui: &mut egui::Ui) -> bool {
    let mut changed = false;
    ui.heading("Tiers").on_hover_text("weights ranked by importance, split into tiers that get their own bit widths");
    let k = config.tiers.len();
    let mut remove = None;
    for i in 0..k {
        ui.horizontal(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 1.0, palette::bits(config.tiers[i].bits as f32));
            ui.label(tier_name(i, k));
            let mut percent = config.tiers[i].share * 100.0;
            let last = i + 1 == k;
            let share = ui
                .add_enabled(!last, egui::DragValue::new(&mut percent).range(0.0..=100.0).speed(0.1).suffix(" %"))
                .on_hover_text("share of the weights in this tier, in percent (the last tier takes the rest)");
            if share.changed() {
                config.tiers[i].share = percent / 100.0;
                changed = true;
            }
            egui::ComboBox::new(("bits", i), "")
                .width(64.0)
                .selected_text(format!("{} bit", config.tiers[i].bits))
                .show_ui(ui, |ui| {
                    for b in ALLOWED_BITS {
                        changed |= ui.selectable_value(&mut config.tiers[i].bits, b, format!("{b} bit")).changed();
                    }
                })
                .response
                .on_hover_text("bits per weight of this tier's codes");
            if k > 1 && ui.small_button("-").on_hover_text("remove this tier").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        config.tiers.remove(i);
        changed = true;
    }
    let add = ui.small_button("+ tier").on_hover_text("split the last tier: its less important half one bit lower");
    if add.clicked() {
        add_tier(&mut config.tiers);
        changed = true;
    }
    // Keep the shares summing to one: the last tier absorbs the difference.
    let head: f64 = config.tiers[..config.tiers.len() - 1].iter().map(|t| t.share).sum();
    if let Some(last) = config.tiers.last_mut() {
        last.share = (1.0 - head).max(0.0);
    }
    if let Some(i) = (1..config.tiers.len()).find(|&i| config.tiers[i].bits > config.tiers[i - 1].bits) {
        ui.colored_label(WARNING_COLOR, format!("tier {} is less important than tier {} but gets more bits", i + 1, i));
    }
    changed
}

/// A new tier splits the last one: the less important half, at the next lower width (the same when already
/// the lowest).
pub fn add_tier(tiers: &mut Vec<Tier>) {
    let last = *tiers.last().expect("a configuration has a tier");
    let lower = ALLOWED_BITS.iter().rev().copied().find(|&b| b < last.bits).unwrap_or(last.bits);
    let n = tiers.len();
    tiers[n - 1].share = last.share / 2.0;
    tiers.push(Tier { share: last.share / 2.0, bits: lower });
}

fn grids_ui(config: &mut QuantConfig, ui: &mut egui::Ui) -> bool {
    let mut changed = false;
    ui.heading("Grids").on_hover_text("how the tiers are laid out and how each grid is fitted");
    let granularities = [
        Granularity::Weight,
        Granularity::Group(32),
        Granularity::Group(64),
        Granularity::Group(128),
        Granularity::Channel,
        Granularity::Tensor,
    ];
    egui::ComboBox::new("granularity", "tier per")
        .selected_text(config.granularity.to_string())
        .show_ui(ui, |ui| {
            for g in granularities {
                changed |= ui.selectable_value(&mut config.granularity, g, g.to_string()).changed();
            }
        })
        .response
        .on_hover_text("the unit that gets a tier: a weight, a group of weights in a row, a row, or a whole matrix");
    let groups =
        [GroupSize::G(32), GroupSize::G(64), GroupSize::G(128), GroupSize::G(256), GroupSize::Row, GroupSize::Tensor];
    egui::ComboBox::new("group_size", "scale per")
        .selected_text(String::from(config.group_size))
        .show_ui(ui, |ui| {
            for g in groups {
                changed |= ui.selectable_value(&mut config.group_size, g, String::from(g)).changed();
            }
        })
        .response
        .on_hover_text("how many weights share one scale (and offset): smaller groups fit better and cost more bits");
    ui.horizontal(|ui| {
        ui.label("thresholds").on_hover_text("where the importance cut-offs between tiers are taken");
        let per_tensor = ui.radio_value(&mut config.scope, Scope::PerTensor, "per tensor");
        changed |= per_tensor.on_hover_text("every matrix has the tier shares").changed();
        let global = ui.radio_value(&mut config.scope, Scope::Global, "whole model");
        changed |= global.on_hover_text("one cut-off for the model: important matrices get more").changed();
    });
    ui.horizontal(|ui| {
        ui.label("grid").on_hover_text("the levels a grid has");
        let asym = ui.radio_value(&mut config.grid, Grid::Asymmetric, "asymmetric");
        changed |= asym.on_hover_text("a scale and an offset (min to max)").changed();
        let sym = ui.radio_value(&mut config.grid, Grid::Symmetric, "symmetric");
        changed |= sym.on_hover_text("a scale only, centred on zero").changed();
    });
    egui::ComboBox::new("quantizer", "fitted by")
        .selected_text(quantizer_label(config.quantizer))
        .show_ui(ui, |ui| {
            for q in QuantizerKind::ALL {
                changed |= ui.selectable_value(&mut config.quantizer, q, quantizer_label(q)).changed();
            }
        })
        .response
        .on_hover_text(
            "how each group's scale is chosen; with a text open its activations weigh least squares and GPTQ",
        );
    if config.grid == Grid::Asymmetric && config.tiers.iter().any(|t| t.bits == 2) {
        ui.colored_label(WARNING_COLOR, "a 2-bit asymmetric grid may have no level at zero");
    }
    changed
}

fn roles_ui(config: &mut QuantConfig, ui: &mut egui::Ui) -> bool {
    let mut changed = false;
    ui.heading("Quantize").on_hover_text("which matrices are quantized by the tiers (or the allocation)");
    ui.horizontal_wrapped(|ui| {
        let roles = &mut config.quantize;
        changed |= ui.checkbox(&mut roles.attention, "attention").on_hover_text("q, k, v, o projections").changed();
        changed |= ui.checkbox(&mut roles.mlp, "MLP").on_hover_text("gate, up, down projections").changed();
        changed |= ui.checkbox(&mut roles.embedding, "embeddings").on_hover_text("the token embedding").changed();
        changed |= ui.checkbox(&mut roles.lm_head, "LM head").on_hover_text("the output projection").changed();
    });
    egui::ComboBox::new("keep_bits", "others at")
        .selected_text(format!("{} bit", config.keep_bits))
        .show_ui(ui, |ui| {
            for b in ALLOWED_BITS {
                changed |= ui.selectable_value(&mut config.keep_bits, b, format!("{b} bit")).changed();
            }
        })
        .response
        .on_hover_text("bits per weight of the matrices not ticked above (16: kept in fp16)");
    changed
}

/// The allocation as a layer over the user's settings: what it does, and undo.
fn allocation_layer_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> bool {
    let tensors = app.settings.config.overrides.len();
    let restores = app.settings.before_allocation.is_some();
    let mut undo = false;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.strong(format!("Nash allocation: {tensors} tensors have their own plan"));
        ui.label("Run uses the allocation's plans. Your tiers and grids below wait underneath; Undo brings them back.");
        let tip = if restores { "back to your settings from before Allocate" } else { "drop the per-tensor plans" };
        undo = ui.button("Undo allocation").on_hover_text(tip).clicked();
    });
    if undo {
        app.settings.undo_allocation();
    }
    undo
}

fn budget_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
    ui.heading("Bit budget").on_hover_text(
        "Allocate prices every tensor's strategies once; the budget then picks each tensor's plan (a Nash equilibrium)",
    );
    let live = app.allocation_in_use().map(|a| a.range);
    let (lo, hi) = live.unwrap_or((1.5, 9.0));
    let mut target = app.settings.target_bpw.clamp(lo, hi);
    let slider = egui::Slider::new(&mut target, lo..=hi).step_by(0.01).fixed_decimals(2).suffix(" bpw").text("target");
    let tip = match live {
        Some(_) => "true bits per parameter of the whole model; dragging re-solves the allocation live",
        None => "true bits per parameter of the whole model that Allocate aims at",
    };
    if ui.add(slider).on_hover_text(tip).changed() {
        app.set_budget(target);
    }
    ui.horizontal(|ui| {
        let busy = app.jobs.is_running(JobKind::Allocate);
        let allocate = ui.add_enabled(app.model.is_some() && !busy, egui::Button::new("Allocate"));
        let tip = "measure what each tensor's strategies cost (ΔKLD on the text's end when a text is open) and solve \
                   for the target";
        if allocate.on_hover_text(tip).clicked() {
            commands.push(Command::Allocate);
        }
        if let Some(a) = app.allocation_in_use() {
            let predicted = if a.sensitivity.is_some() {
                format!(" · predicted ΔKLD {}", number(a.total_price))
            } else {
                String::new()
            };
            ui.label(format!("{} bpw{predicted}", number(a.true_bpw)));
        }
    });
}

fn evaluate_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
    ui.heading("Evaluate").on_hover_text("perplexity, KLD and top-1 agreement against the unquantized model");
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut app.settings.ctx).range(16..=4096).prefix("context "))
            .on_hover_text("tokens per evaluation window");
        ui.add(egui::DragValue::new(&mut app.settings.eval_windows).range(1..=512).prefix("windows "))
            .on_hover_text("how many windows from the start of the text are scored");
    });
    ui.horizontal(|ui| {
        let can_run = app.model.is_some() && app.config_problem().is_none();
        let run = ui.add_enabled(can_run, egui::Button::new("Run"));
        if run.on_hover_text("quantize with the configuration above and evaluate it (Ctrl+R)").clicked() {
            commands.push(Command::Run);
        }
        let baselines = ui.add_enabled(
            app.model.is_some() && !app.jobs.is_running(JobKind::Baselines),
            egui::Button::new("Baselines"),
        );
        let tip = format!(
            "uniform grids, least squares, GPTQ, the seed preset and Nash at equal size: {} rows",
            nash_swarm::compare::planned_rows(&app.baseline_spec())
        );
        if baselines.on_hover_text(tip).clicked() {
            commands.push(Command::Baselines);
        }
    });
}

/// What each quantizer does, in a few words.
fn quantizer_label(q: QuantizerKind) -> &'static str {
    match q {
        QuantizerKind::Rtn => "min-max, round to nearest",
        QuantizerKind::LeastSquares => "least squares",
        QuantizerKind::Gptq => "GPTQ (error feedback)",
    }
}
