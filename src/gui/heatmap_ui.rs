//! Layers × tensor kinds, coloured by the chosen metric, with a legend in real values, tooltips at the pointer,
//! and click-to-select. Bits and top-tier shares are estimated live from the configuration Run would use;
//! quantization error comes from a run and says which.

use eframe::egui::{self, Color32, Rect, Sense, Vec2};
use nash_swarm::quant::tiers::ALLOWED_BITS;

use super::app::{Command, ExplorerApp};
use super::palette;
use super::readable::number;
use super::state::Metric;

/// The metric's value for a tensor (log10 for the wide-ranged ones), if known.
pub fn metric_value(app: &ExplorerApp, name: &str) -> Option<f32> {
    let live = || app.estimate.as_ref()?.tensors.get(name);
    match app.settings.metric {
        Metric::MeanImportance => {
            app.analysis.as_ref()?.tensors.get(name).map(|t| t.mean_importance.max(1e-12).log10())
        }
        Metric::TopTierShare => live()?.top_tier_share.map(|s| s as f32),
        Metric::AssignedBits => live().map(|t| t.bits_per_weight as f32),
        Metric::QuantError => app.detail.get(name).map(|d| d.relative_error.max(1e-12).log10() as f32),
        Metric::Sensitivity => {
            let fit = app.allocation.as_ref()?.sensitivity.as_ref()?.fits.get(name)?;
            Some(fit.scale.max(1e-30).log10() as f32)
        }
        Metric::PredictedKld => app.allocation.as_ref()?.predicted_kld.get(name).map(|k| k.max(1e-12).log10() as f32),
        Metric::BitsDifference => {
            let [a, b] = compared_runs(app)?;
            let bits = |run: usize| app.runs[run].detail.get(name).map(|d| d.bits_per_weight);
            Some((bits(a)? - bits(b)?) as f32)
        }
    }
}

/// The two runs marked in the table, in the order marked.
fn compared_runs(app: &ExplorerApp) -> Option<[usize; 2]> {
    match app.table.compared[..] {
        [a, b] if a < app.runs.len() && b < app.runs.len() => Some([a, b]),
        _ => None,
    }
}

/// Where a metric's values come from, said above the heatmap.
fn source_note(app: &ExplorerApp) -> Option<String> {
    match app.settings.metric {
        Metric::TopTierShare | Metric::AssignedBits => Some("estimated for the current settings".into()),
        Metric::QuantError => app.shown_run.map(|i| {
            let changed = app.runs.get(i).is_some_and(|r| r.config != app.settings.config);
            format!("from run {}{}", i + 1, if changed { " (settings changed since)" } else { "" })
        }),
        Metric::Sensitivity | Metric::PredictedKld => {
            app.allocation.as_ref().map(|a| format!("from the allocation at {} bpw", number(a.true_bpw)))
        }
        Metric::MeanImportance => app.analysis.as_ref().map(|a| a.importance.label()),
        Metric::BitsDifference => compared_runs(app).map(|[a, b]| format!("run {} minus run {}", a + 1, b + 1)),
    }
}

fn metric_tip(metric: Metric) -> &'static str {
    match metric {
        Metric::MeanImportance => "the mean importance score of the tensor's weights",
        Metric::TopTierShare => "share of the tensor's weights in its most important tier",
        Metric::AssignedBits => "stored bits per weight: codes, scales and tier map",
        Metric::QuantError => "relative Frobenius error of the quantized tensor in the run shown",
        Metric::Sensitivity => "measured ΔKLD per unit of weight error (Allocate with a text open)",
        Metric::PredictedKld => "the ΔKLD the allocation's measurement predicts for the tensor's plan, in nats",
        Metric::BitsDifference => "bits per weight of one run minus another's (mark two runs with \"vs\" in the table)",
    }
}

/// Draws the heatmap with its cells sized so that it and its legend fit `height`.
pub fn heatmap_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, height: f32) -> Vec<Command> {
    let mut commands = Vec::new();
    ui.horizontal(|ui| {
        ui.heading("Layers");
        egui::ComboBox::new("metric", "colour by")
            .selected_text(app.settings.metric.label())
            .show_ui(ui, |ui| {
                for m in Metric::ALL {
                    ui.selectable_value(&mut app.settings.metric, m, m.label()).on_hover_text(metric_tip(m));
                }
            })
            .response
            .on_hover_text(metric_tip(app.settings.metric));
    });
    if let Some(note) = source_note(app) {
        ui.weak(note);
    }
    let Some(analysis) = app.analysis.clone() else {
        ui.label("computing importance… (progress in the status bar)");
        return commands;
    };
    let cells: Vec<(usize, usize, String)> = analysis
        .tensors
        .iter()
        .filter_map(|(name, t)| Some((t.layer?, analysis.kinds.iter().position(|k| *k == t.kind)?, name.clone())))
        .collect();
    let values: Vec<Option<f32>> = cells.iter().map(|(_, _, n)| metric_value(app, n)).collect();
    let known: Vec<f32> = values.iter().flatten().copied().collect();
    if known.is_empty() {
        let hint = match app.settings.metric {
            Metric::Sensitivity | Metric::PredictedKld => "Allocate with a text open (measured prices) first",
            Metric::QuantError => "Run first",
            Metric::BitsDifference => "mark two runs with \"vs\" in the results table",
            _ => "waiting for importance",
        };
        ui.weak(format!("{}: {hint}", app.settings.metric.label()));
    }
    let (lo, hi) = known.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let colour = |v: f32| match app.settings.metric {
        Metric::AssignedBits => palette::bits(v),
        Metric::BitsDifference => palette::bits_difference(v),
        _ => palette::viridis((v - lo) / (hi - lo).max(1e-6)),
    };

    let cell = Vec2::new(40.0, ((height - 90.0) / analysis.layers.max(1) as f32).clamp(4.0, 22.0));
    let label_width = 28.0;
    let size = Vec2::new(label_width + cell.x * analysis.kinds.len() as f32, 16.0 + cell.y * analysis.layers as f32);
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let painter = ui.painter_at(rect);
    let text_color = ui.visuals().text_color();
    for (k, kind) in analysis.kinds.iter().enumerate() {
        let x = rect.left() + label_width + (k as f32 + 0.5) * cell.x;
        painter.text(
            egui::pos2(x, rect.top() + 7.0),
            egui::Align2::CENTER_CENTER,
            kind,
            egui::FontId::proportional(11.0),
            text_color,
        );
    }
    let cell_rect = |layer: usize, k: usize| {
        Rect::from_min_size(
            egui::pos2(rect.left() + label_width + k as f32 * cell.x, rect.top() + 16.0 + layer as f32 * cell.y),
            cell - Vec2::splat(1.0),
        )
    };
    for layer in (0..analysis.layers).step_by((analysis.layers / 15).max(1)) {
        let y = rect.top() + 16.0 + (layer as f32 + 0.5) * cell.y;
        painter.text(
            egui::pos2(rect.left() + label_width - 4.0, y),
            egui::Align2::RIGHT_CENTER,
            layer.to_string(),
            egui::FontId::proportional(10.0),
            text_color,
        );
    }
    for ((layer, k, name), value) in cells.iter().zip(&values) {
        let color = value.map_or(Color32::from_gray(60), colour);
        painter.rect_filled(cell_rect(*layer, *k), 1.0, color);
        if app.selected.as_deref() == Some(name) {
            painter.rect_stroke(
                cell_rect(*layer, *k),
                1.0,
                egui::Stroke::new(2.0, Color32::WHITE),
                egui::StrokeKind::Inside,
            );
        }
    }
    let hovered = response
        .hover_pos()
        .and_then(|p| cells.iter().zip(&values).find(|((l, k, _), _)| cell_rect(*l, *k).contains(p)));
    if let Some(((_, _, name), _)) = hovered {
        let name = name.clone();
        let tip = tooltip(app, &name);
        if response.clicked() {
            commands.push(Command::Select(name.clone()));
        }
        response.on_hover_text_at_pointer(tip);
    }
    match app.settings.metric {
        Metric::AssignedBits => bits_legend(ui),
        Metric::BitsDifference => difference_legend(ui),
        metric => legend(ui, lo, hi, metric),
    }
    commands
}

fn tooltip(app: &ExplorerApp, name: &str) -> String {
    let mut lines = vec![name.to_string()];
    if let Some(t) = app.analysis.as_ref().and_then(|a| a.tensors.get(name)) {
        lines.push(format!("{} × {}", t.rows, t.cols));
        lines.push(format!("mean importance {}", number(t.mean_importance as f64)));
    }
    if let Some(e) = app.estimate.as_ref().and_then(|e| e.tensors.get(name)) {
        lines.push(format!("{} bits per weight with the current settings", number(e.bits_per_weight)));
        if let Some(top) = e.top_tier_share {
            lines.push(format!("{:.1}% in the top tier", 100.0 * top));
        }
    }
    if let (Some(d), Some(run)) = (app.detail.get(name), app.shown_run) {
        lines.push(format!("run {}: {}, relative error {}", run + 1, d.plan_label, number(d.relative_error)));
    }
    if let Some(allocation) = &app.allocation {
        if let Some(k) = allocation.predicted_kld.get(name) {
            lines.push(format!("predicted ΔKLD {} nats", number(*k)));
        }
        if let Some(fit) = allocation.sensitivity.as_ref().and_then(|s| s.fits.get(name)) {
            lines.push(format!("sensitivity {} ΔKLD per unit of weight error", number(fit.scale)));
        }
    }
    lines.join("\n")
}

/// A continuous legend with its ends (and middle) in real values.
fn legend(ui: &mut egui::Ui, lo: f32, hi: f32, metric: Metric) {
    if !lo.is_finite() {
        return;
    }
    let real = |v: f32| match metric {
        Metric::MeanImportance | Metric::QuantError | Metric::Sensitivity | Metric::PredictedKld => {
            number(10f64.powf(v as f64))
        }
        Metric::TopTierShare => format!("{:.1}%", v * 100.0),
        Metric::AssignedBits | Metric::BitsDifference => format!("{} b", number(v as f64)),
    };
    ui.horizontal(|ui| {
        ui.label(real(lo));
        gradient_bar(ui, palette::viridis);
        ui.label(real(hi));
    })
    .response
    .on_hover_text(format!("middle: {}", real((lo + hi) / 2.0)));
}

/// A legend's colour bar: `colour_at` from 0 (left) to 1 (right) in 32 steps.
fn gradient_bar(ui: &mut egui::Ui, colour_at: impl Fn(f32) -> Color32) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(160.0, 10.0), Sense::hover());
    for i in 0..32 {
        let r = Rect::from_min_size(egui::pos2(rect.left() + i as f32 * 5.0, rect.top()), Vec2::new(5.0, 10.0));
        ui.painter().rect_filled(r, 0.0, colour_at(i as f32 / 31.0));
    }
}

/// The fixed scale of a bit difference.
fn difference_legend(ui: &mut egui::Ui) {
    let span = palette::BITS_DIFFERENCE_SPAN;
    ui.horizontal(|ui| {
        ui.label(format!("-{span} b"));
        gradient_bar(ui, |t| palette::bits_difference((t * 2.0 - 1.0) * span));
        ui.label(format!("+{span} b"));
        ui.weak("(first marked run minus the second)");
    });
}

/// The bit palette, one swatch per width: the same colours in every view and run.
pub fn bits_legend(ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        for bits in ALLOWED_BITS {
            let (rect, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
            ui.painter().rect_filled(rect, 1.0, palette::bits(bits as f32));
            ui.label(bits.to_string());
        }
        ui.weak("bits per weight (between two widths: a mix)");
    });
}
