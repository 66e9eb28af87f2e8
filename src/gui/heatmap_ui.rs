//! Layers × tensor kinds, coloured by the chosen metric, with a legend, tooltips, and click-to-select.

use eframe::egui::{self, Color32, Rect, Sense, Vec2};

use super::app::{Command, ExplorerApp};
use super::state::Metric;

/// Viridis, sampled at five stops and interpolated.
pub fn colormap(t: f32) -> Color32 {
    const STOPS: [[f32; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let (i, f) = ((x.floor() as usize).min(3), x - x.floor().min(3.0));
    let c = |k: usize| STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f;
    Color32::from_rgb(c(0) as u8, c(1) as u8, c(2) as u8)
}

/// The metric's value for a tensor (log10 for the wide-ranged ones), if known.
pub fn metric_value(app: &ExplorerApp, name: &str) -> Option<f32> {
    match app.settings.metric {
        Metric::MeanImportance => {
            app.analysis.as_ref()?.tensors.get(name).map(|t| t.mean_importance.max(1e-12).log10())
        }
        Metric::TopTierShare => app.detail.get(name).map(|d| d.top_tier_share as f32),
        Metric::AssignedBits => {
            let from_allocation =
                (!app.settings.config.overrides.is_empty()).then(|| app.allocation.as_ref()?.bits.get(name)).flatten();
            from_allocation.copied().or_else(|| app.detail.get(name).map(|d| d.bits_per_weight)).map(|b| b as f32)
        }
        Metric::QuantError => app.detail.get(name).map(|d| d.relative_error.max(1e-12).log10() as f32),
        Metric::Sensitivity => {
            let fit = app.allocation.as_ref()?.sensitivity.as_ref()?.fits.get(name)?;
            Some(fit.scale.max(1e-30).log10() as f32)
        }
        Metric::PredictedKld => app.allocation.as_ref()?.predicted_kld.get(name).map(|k| k.max(1e-12).log10() as f32),
    }
}

pub fn heatmap_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    ui.horizontal(|ui| {
        ui.heading("Layers");
        egui::ComboBox::new("metric", "colour").selected_text(app.settings.metric.label()).show_ui(ui, |ui| {
            for m in Metric::ALL {
                ui.selectable_value(&mut app.settings.metric, m, m.label());
            }
        });
    });
    let Some(analysis) = app.analysis.clone() else {
        ui.spinner();
        ui.label("computing importance…");
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
            _ => "run a quantization (or Allocate) first",
        };
        ui.weak(format!("{}: {hint}", app.settings.metric.label()));
    }
    let (lo, hi) = known.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = (hi - lo).max(1e-6);

    let cell = Vec2::new(40.0, (380.0 / analysis.layers.max(1) as f32).clamp(6.0, 22.0));
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
        let color = value.map_or(Color32::from_gray(60), |v| colormap((v - lo) / span));
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
        response.on_hover_text(tip);
    }
    legend(ui, lo, hi, app.settings.metric);
    commands
}

fn tooltip(app: &ExplorerApp, name: &str) -> String {
    let mut lines = vec![name.to_string()];
    if let Some(t) = app.analysis.as_ref().and_then(|a| a.tensors.get(name)) {
        lines.push(format!("{} × {}", t.rows, t.cols));
        lines.push(format!("mean importance {:.3e}", t.mean_importance));
    }
    if let Some(d) = app.detail.get(name) {
        lines.push(format!("plan {}", d.plan_label));
        lines.push(format!("top tier {:.1}%", 100.0 * d.top_tier_share));
        lines.push(format!("{:.3} bits per weight stored", d.bits_per_weight));
        lines.push(format!("relative error {:.3e}", d.relative_error));
    }
    if let Some(allocation) = &app.allocation {
        if let Some(b) = allocation.bits.get(name) {
            lines.push(format!("Nash: {b:.3} bits per weight"));
        }
        if let Some(k) = allocation.predicted_kld.get(name) {
            lines.push(format!("predicted ΔKLD {k:.3e} nats"));
        }
        if let Some(fit) = allocation.sensitivity.as_ref().and_then(|s| s.fits.get(name)) {
            lines.push(format!("sensitivity {:.3e} ΔKLD per unit of weight error", fit.scale));
        }
    }
    lines.join("\n")
}

fn legend(ui: &mut egui::Ui, lo: f32, hi: f32, metric: Metric) {
    if !lo.is_finite() {
        return;
    }
    let (fmt_lo, fmt_hi) = match metric {
        Metric::MeanImportance | Metric::QuantError | Metric::Sensitivity | Metric::PredictedKld => {
            (format!("1e{lo:.1}"), format!("1e{hi:.1}"))
        }
        Metric::TopTierShare => (format!("{:.1}%", lo * 100.0), format!("{:.1}%", hi * 100.0)),
        Metric::AssignedBits => (format!("{lo:.2} b"), format!("{hi:.2} b")),
    };
    ui.horizontal(|ui| {
        ui.label(fmt_lo);
        let (rect, _) = ui.allocate_exact_size(Vec2::new(160.0, 10.0), Sense::hover());
        for i in 0..32 {
            let r = Rect::from_min_size(egui::pos2(rect.left() + i as f32 * 5.0, rect.top()), Vec2::new(5.0, 10.0));
            ui.painter().rect_filled(r, 0.0, colormap(i as f32 / 31.0));
        }
        ui.label(fmt_hi);
    });
}
