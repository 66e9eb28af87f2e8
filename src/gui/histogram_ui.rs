//! The log-importance histogram of the selected tensor or the whole model, with one vertical line per tier
//! threshold. Dragging a line moves the tier boundary; shares, payload and true bpw and size update live from
//! the precomputed histograms (no re-quantization).

use eframe::egui::{self, Rect};
use egui_plot::{Bar, BarChart, Plot, VLine};
use nash_swarm::quant::estimate::{BINS, ImportanceIndex};

use super::app::{Command, ExplorerApp};
use super::tensor_ui::bits_color;

const DISPLAY_BINS: usize = 128;

#[derive(Default)]
pub struct HistogramState {
    pub whole_model: bool,
    dragging: Option<usize>,
    /// Where the plot and its threshold lines were last drawn (screen coordinates): tests drag them.
    pub plot_rect: Option<Rect>,
    pub line_x: Vec<f32>,
}

pub fn histogram_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    let Some(analysis) = app.analysis.clone() else { return commands };
    let Some(index) = &analysis.index else {
        ui.spinner();
        return commands;
    };
    ui.horizontal(|ui| {
        ui.heading("Importance histogram");
        ui.radio_value(&mut app.histogram.whole_model, false, "selected tensor");
        ui.radio_value(&mut app.histogram.whole_model, true, "whole model");
    });
    let name = if app.histogram.whole_model { None } else { app.selected.as_deref() };
    let hist = index.histogram(name);
    let width = index.bin_width();
    let group = BINS / DISPLAY_BINS;
    let total: f64 = hist.iter().map(|c| *c as f64).sum::<f64>().max(1.0);
    let bars: Vec<Bar> = hist
        .chunks(group)
        .enumerate()
        .map(|(i, c)| {
            let x = index.log_min + width * group as f32 * (i as f32 + 0.5);
            Bar::new(x as f64, 100.0 * c.iter().map(|v| *v as f64).sum::<f64>() / total)
                .width((width * group as f32) as f64)
        })
        .collect();

    let tiers = app.settings.config.tiers.clone();
    let mut cumulative = Vec::new();
    let mut sum = 0.0;
    for t in &tiers[..tiers.len() - 1] {
        sum += t.share;
        cumulative.push(sum);
    }
    let lines: Vec<f32> =
        cumulative.iter().map(|c| ImportanceIndex::threshold_for_share(&hist, *c, index.log_min, width)).collect();

    let response = Plot::new("histogram")
        .height(200.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .x_axis_label("log10 importance")
        .y_axis_label("% of weights")
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("importance", bars).color(egui::Color32::from_rgb(110, 140, 200)));
            for (i, x) in lines.iter().enumerate() {
                let label = format!("top {:.1}% -> {} bit", cumulative[i] * 100.0, tiers[i].bits);
                plot.vline(VLine::new(label, *x as f64).width(3.0).color(bits_color(tiers[i].bits as f32)));
            }
        });
    let transform = response.transform;
    let screen_x: Vec<f32> = lines.iter().map(|x| transform.position_from_point_x(*x as f64)).collect();
    let r = &response.response;
    if r.drag_started() {
        // Where the button went down, not where the pointer is now: a fast drag has already moved away.
        let origin = ui.input(|i| i.pointer.press_origin()).or(r.interact_pointer_pos());
        let pointer = origin.map_or(f32::NAN, |p| p.x);
        app.histogram.dragging = screen_x
            .iter()
            .enumerate()
            .map(|(i, x)| (i, (x - pointer).abs()))
            .filter(|(_, d)| *d < 14.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
    }
    if let (Some(i), Some(pos)) = (app.histogram.dragging, r.interact_pointer_pos()) {
        if r.dragged() {
            let x = transform.value_from_position(pos).x as f32;
            let lower = if i == 0 { 0.0 } else { cumulative[i - 1] };
            let upper = cumulative.get(i + 1).copied().unwrap_or(1.0);
            let share = ImportanceIndex::share_above(&hist, x, index.log_min, width).clamp(lower + 1e-4, upper - 1e-4);
            cumulative[i] = share;
            let config = &mut app.settings.config;
            let mut previous = 0.0;
            for (j, c) in cumulative.iter().enumerate() {
                config.tiers[j].share = c - previous;
                previous = *c;
            }
            let last = config.tiers.len() - 1;
            config.tiers[last].share = 1.0 - previous;
            commands.push(Command::ConfigChanged);
        }
    }
    if r.drag_stopped() {
        app.histogram.dragging = None;
    }
    app.histogram.plot_rect = Some(*transform.frame());
    app.histogram.line_x = screen_x;
    readout(app, ui);
    commands
}

/// The live bit readout under the histogram.
fn readout(app: &ExplorerApp, ui: &mut egui::Ui) {
    let shares: Vec<String> =
        app.settings.config.tiers.iter().map(|t| format!("{:.1}% -> {} bit", t.share * 100.0, t.bits)).collect();
    ui.label(format!("tiers: {}", shares.join(" · ")));
    if let Some(e) = &app.estimate {
        let realized: Vec<String> = e.tier_shares.iter().map(|s| format!("{:.1}%", s * 100.0)).collect();
        ui.label(format!(
            "payload {:.3} bpw · true ~{:.3} bpw · size ~{:.2} MB · realized shares {}",
            e.payload_bpw,
            e.true_bpw,
            e.size_bytes as f64 / 1e6,
            realized.join(" / ")
        ));
    }
}
