//! The log-importance histogram of the selected tensor or the whole model, with one labelled vertical line per
//! tier threshold. Dragging a line moves the tier boundary; shares, payload and true bpw and size update live
//! from the precomputed histograms (no re-quantization). The axis spans the data's robust range (the 0.2nd to
//! 99.8th percentile), so a few extreme weights do not squash the rest.

use eframe::egui::{self, Rect};
use egui_plot::{Bar, BarChart, HoverPosition, Plot, PlotPoint, Text, VLine};
use nash_swarm::quant::estimate::{BINS, ImportanceIndex};

use super::app::{Command, ExplorerApp};
use super::palette;
use super::readable::{log_marks, number, tick};

const DISPLAY_BINS: usize = 128;
/// The share of weights left out of view on each side.
const TAIL: f64 = 0.002;
/// How near (in points) a press must be to grab a line.
const GRAB: f32 = 14.0;

#[derive(Default)]
pub struct HistogramState {
    pub whole_model: bool,
    dragging: Option<usize>,
    /// Lines under the press, when several lie together: the drag's direction picks one.
    pending: Vec<usize>,
    /// Where the plot and its threshold lines were last drawn (screen coordinates): tests drag them.
    pub plot_rect: Option<Rect>,
    pub line_x: Vec<f32>,
}

/// The histogram, its plot `height` points tall, and the live readout under it.
pub fn histogram_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, height: f32) -> Vec<Command> {
    let mut commands = Vec::new();
    let Some(analysis) = app.analysis.clone() else { return commands };
    let Some(index) = &analysis.index else {
        ui.weak("the histograms come when every tensor is scored");
        return commands;
    };
    ui.horizontal(|ui| {
        ui.heading("Importance histogram").on_hover_text(
            "how the weights' importance is spread; drag a line to move a tier's boundary (the bits follow live)",
        );
        ui.radio_value(&mut app.histogram.whole_model, false, "selected tensor");
        ui.radio_value(&mut app.histogram.whole_model, true, "whole model");
    });
    let name = if app.histogram.whole_model { None } else { app.selected.as_deref() };
    let hist = index.histogram(name);
    let width = index.bin_width();
    let group = BINS / DISPLAY_BINS;
    let total: f64 = hist.iter().map(|c| *c as f64).sum::<f64>().max(1.0);
    let (view_lo, view_hi) = robust_range(&hist, index, group);
    let bars: Vec<Bar> = hist
        .chunks(group)
        .enumerate()
        .map(|(i, c)| {
            let x = index.log_min + width * group as f32 * (i as f32 + 0.5);
            Bar::new(x as f64, 100.0 * c.iter().map(|v| *v as f64).sum::<f64>() / total)
                .width((width * group as f32) as f64)
        })
        .filter(|b| (view_lo..=view_hi).contains(&(b.argument as f32)))
        .collect();
    let top = bars.iter().map(|b| b.value).fold(0.0, f64::max);

    // A tensor with its own plan (an allocation's) shows that plan's tiers, which are not dragged.
    let own_plan = name.and_then(|n| app.settings.config.overrides.get(n));
    let tiers = own_plan.map_or_else(|| app.settings.config.tiers.clone(), |plan| plan.tiers.clone());
    if let Some(plan) = own_plan {
        ui.weak(format!("this tensor follows the allocation's plan: {}", plan.label()));
    }
    let mut cumulative = Vec::new();
    let mut sum = 0.0;
    for t in &tiers[..tiers.len() - 1] {
        sum += t.share;
        cumulative.push(sum);
    }
    let lines: Vec<f32> =
        cumulative.iter().map(|c| ImportanceIndex::threshold_for_share(&hist, *c, index.log_min, width)).collect();

    let response = Plot::new("histogram")
        .height(height)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_y(0.0)
        .include_y(top * 1.2)
        .x_axis_label("importance (log scale)")
        .y_axis_label("% of weights")
        .x_grid_spacer(log_marks)
        .x_axis_formatter(|mark, _| tick(10f64.powf(mark.value)))
        .label_formatter(|position| {
            let point = match position {
                HoverPosition::NearDataPoint { position, .. } | HoverPosition::Elsewhere { position } => position,
            };
            Some(format!("importance {}", number(10f64.powf(point.x))))
        })
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("importance", bars).color(egui::Color32::from_rgb(110, 140, 200)));
            for (i, x) in lines.iter().enumerate() {
                let colour = palette::bits(tiers[i].bits as f32);
                let label = format!("tier {} | {}", i + 1, i + 2);
                plot.vline(VLine::new(label.clone(), *x as f64).width(3.0).color(colour));
                // Labels stagger down so neighbouring lines' labels do not overlap.
                let y = top * (1.08 - 0.12 * (i % 3) as f64);
                let text = format!("{} b | {} b", tiers[i + 1].bits, tiers[i].bits);
                plot.text(
                    Text::new(label, PlotPoint::new(*x as f64, y), text)
                        .color(colour)
                        .anchor(egui::Align2::CENTER_BOTTOM),
                );
            }
        });
    let transform = response.transform;
    let screen_x: Vec<f32> = lines.iter().map(|x| transform.position_from_point_x(*x as f64)).collect();
    let r = &response.response;
    if r.drag_started() {
        // Where the button went down, not where the pointer is now: a fast drag has already moved away.
        let origin = ui.input(|i| i.pointer.press_origin()).or(r.interact_pointer_pos());
        app.histogram.pending = lines_under(&screen_x, origin.map_or(f32::NAN, |p| p.x));
        app.histogram.dragging = None;
    }
    if app.histogram.dragging.is_none() && !app.histogram.pending.is_empty() && r.dragged() {
        // Lines lie in falling order of importance (tier 1's is rightmost): moving right can only move the
        // first of lines lying together, moving left only the last.
        let dx = ui.input(|i| i.pointer.press_origin().zip(i.pointer.latest_pos()).map_or(0.0, |(a, b)| b.x - a.x));
        let pending = &app.histogram.pending;
        app.histogram.dragging = match dx {
            dx if dx > 0.0 => pending.iter().min().copied(),
            dx if dx < 0.0 => pending.iter().max().copied(),
            _ => None,
        };
    }
    if let (Some(i), Some(pos), None) = (app.histogram.dragging, r.interact_pointer_pos(), own_plan)
        && r.dragged()
    {
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
    if r.drag_stopped() {
        app.histogram.dragging = None;
        app.histogram.pending.clear();
    }
    app.histogram.plot_rect = Some(*transform.frame());
    app.histogram.line_x = screen_x;
    readout(app, ui);
    commands
}

/// The lines within reach of a press at `x`: the nearest, and any lying with it.
fn lines_under(screen_x: &[f32], x: f32) -> Vec<usize> {
    let distance = |i: usize| (screen_x[i] - x).abs();
    let nearest = (0..screen_x.len()).map(distance).fold(f32::INFINITY, f32::min);
    (0..screen_x.len()).filter(|&i| distance(i) < GRAB && distance(i) <= nearest + 2.0).collect()
}

/// The log10 importances between which all but `TAIL` of the weights lie on each side (whole display bins).
fn robust_range(hist: &[u32], index: &ImportanceIndex, group: usize) -> (f32, f32) {
    let total: f64 = hist.iter().map(|c| *c as f64).sum();
    let bin = |share: f64| {
        let mut seen = 0.0;
        hist.iter().position(|c| {
            seen += *c as f64;
            seen > share * total
        })
    };
    let width = index.bin_width() * group as f32;
    let at = |b: Option<usize>| index.log_min + (b.unwrap_or(0) / group) as f32 * width;
    let (lo, hi) = (at(bin(TAIL)), at(bin(1.0 - TAIL)) + width);
    (lo - width, hi + width)
}

/// The live bit readout under the histogram: what Run would use.
fn readout(app: &ExplorerApp, ui: &mut egui::Ui) {
    let overridden = app.settings.config.overrides.len();
    if overridden == 0 {
        let tiers = &app.settings.config.tiers;
        let shares: Vec<String> = tiers.iter().map(|t| format!("{:.1}% at {} bit", t.share * 100.0, t.bits)).collect();
        ui.label(format!("tiers: {}", shares.join(" · ")));
    }
    if let Some(e) = &app.estimate {
        ui.label(format!(
            "payload {:.3} bpw · true ~{:.3} bpw · size ~{:.2} MB",
            e.payload_bpw,
            e.true_bpw,
            e.size_bytes as f64 / 1e6
        ));
        let followed = e.tier_shares.iter().sum::<f64>() > 0.0;
        if followed {
            let realized: Vec<String> = e.tier_shares.iter().map(|s| format!("{:.1}%", s * 100.0)).collect();
            ui.weak(format!("realized shares {}", realized.join(" / ")))
                .on_hover_text("the tiers' shares over the weights that follow them (global thresholds move them)");
        } else if overridden > 0 {
            ui.weak(format!("every quantized tensor follows the allocation ({overridden} plans)"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lines_under;

    #[test]
    fn a_press_takes_the_nearest_line_and_every_line_lying_with_it() {
        // Lines 1 and 2 lie together at 300: both are candidates, the drag's direction picks one.
        assert_eq!(lines_under(&[400.0, 300.0, 300.0, 100.0], 305.0), vec![1, 2]);
        assert_eq!(lines_under(&[400.0, 300.0, 200.0], 395.0), vec![0]);
        assert!(lines_under(&[400.0, 300.0], 350.0).is_empty(), "out of reach of both");
    }
}
