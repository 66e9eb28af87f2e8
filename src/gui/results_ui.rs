//! This session's runs and the baselines: a table (click a run to restore its configuration), a Pareto plot of
//! true bits per weight against perplexity, and the latest Nash measurement's predicted against measured ΔKLD.

use eframe::egui;
use egui_plot::{HLine, Legend, Line, Plot as PlotWidget, PlotPoints, Points};
use nash_swarm::alloc::sensitivity::Sensitivity;

use super::app::{Command, ExplorerApp};

const PARETO_WIDTH: f32 = 380.0;

/// Which plot the results' side panel shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plot {
    #[default]
    Pareto,
    /// The latest measured allocation's held-out pairs.
    Sensitivity,
}

pub fn results_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    // The plot keeps a fixed panel; the table takes the rest and scrolls inside it.
    egui::Panel::right("pareto_panel").exact_size(PARETO_WIDTH).resizable(false).show(ui, |ui| {
        let measured = app.allocation.as_ref().and_then(|a| a.sensitivity.clone());
        if measured.is_some() {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut app.plot, Plot::Pareto, "Pareto");
                ui.selectable_value(&mut app.plot, Plot::Sensitivity, "Sensitivity");
            });
        }
        match (app.plot, measured) {
            (Plot::Sensitivity, Some(sensitivity)) => sensitivity_ui(&sensitivity, ui),
            _ => pareto_ui(app, ui),
        }
    });
    egui::CentralPanel::default().show(ui, |ui| {
        ui.heading("Results");
        // Solid bars take their own space: a floating bar would sit on the last row and take its clicks.
        ui.style_mut().spacing.scroll = egui::style::ScrollStyle::solid();
        egui::ScrollArea::both().id_salt("results_table").show(ui, |ui| {
            egui::Grid::new("results").striped(true).show(ui, |ui| {
                for h in ["", "configuration", "true bpw", "size MB", "PPL", "dPPL", "KLD", "top-1"] {
                    ui.strong(h);
                }
                ui.end_row();
                for row in &app.baselines {
                    ui.label(&row.method);
                    configuration_label(ui, &row.configuration);
                    ui.label(format!("{:.3}", row.true_bpw));
                    ui.label(format!("{:.2}", row.size_bytes as f64 / 1e6));
                    ui.label(format!("{:.3}", row.ppl));
                    ui.label(format!("{:+.2}%", row.delta_ppl_pct));
                    ui.label(format!("{:.4}", row.kld_mean));
                    ui.label(format!("{:.1}%", row.top1_agreement * 100.0));
                    ui.end_row();
                }
                for (i, run) in app.runs.iter().enumerate() {
                    if ui.button(format!("run {}", i + 1)).on_hover_text("restore this configuration").clicked() {
                        commands.push(Command::Restore(i));
                    }
                    let summary = run.config.summary();
                    match &run.prices {
                        Some(prices) => configuration_label(ui, &format!("{summary}, {prices}")),
                        None => configuration_label(ui, &summary),
                    }
                    ui.label(format!("{:.3}", run.bits.true_bpw));
                    ui.label(format!("{:.2}", run.size_bytes as f64 / 1e6));
                    ui.label(format!("{:.3}", run.ppl));
                    ui.label(format!("{:+.2}%", run.delta_ppl_pct));
                    ui.label(format!("{:.4}", run.kld.mean));
                    ui.label(format!("{:.1}%", run.kld.top1_agreement * 100.0));
                    ui.end_row();
                }
            });
            if app.runs.is_empty() && app.baselines.is_empty() {
                ui.weak("Run evaluates the current configuration; Baselines adds the reference rows.");
            }
        });
    });
    commands
}

fn pareto_ui(app: &ExplorerApp, ui: &mut egui::Ui) {
    ui.heading("Pareto: true bpw vs PPL");
    // PPL spans from tens to 1e9 between rows: a log axis keeps them all readable.
    let runs: Vec<[f64; 2]> = app.runs.iter().map(|r| [r.bits.true_bpw, r.ppl.log10()]).collect();
    let baselines: Vec<[f64; 2]> = app.baselines.iter().skip(1).map(|r| [r.true_bpw, r.ppl.log10()]).collect();
    PlotWidget::new("pareto")
        .height(200.0)
        .include_x(2.0)
        .include_x(8.0)
        .legend(Legend::default())
        .x_axis_label("true bits per weight")
        .y_axis_label("log10 PPL")
        .show(ui, |plot| {
            if let Some(base) = app.base_ppl {
                plot.hline(HLine::new("unquantized", base.log10()).color(egui::Color32::GRAY));
            }
            plot.points(
                Points::new("baselines", PlotPoints::from(baselines))
                    .radius(5.0)
                    .color(egui::Color32::from_rgb(230, 150, 60)),
            );
            plot.points(
                Points::new("runs", PlotPoints::from(runs)).radius(5.0).color(egui::Color32::from_rgb(90, 170, 250)),
            );
        });
}

/// The held-out pairs of the latest measurement: each (tensor, strategy)'s ΔKLD predicted from its weight
/// error against the ΔKLD measured by running the model; on the diagonal, the price is right.
fn sensitivity_ui(sensitivity: &Sensitivity, ui: &mut egui::Ui) {
    ui.heading("Sensitivity: predicted vs measured ΔKLD");
    ui.label(format!(
        "{} held-out pairs, Spearman {:.3} (weight error alone {:.3})",
        sensitivity.holdout.len(),
        sensitivity.spearman,
        sensitivity.spearman_weight_error
    ));
    // Both span decades: log10 on both axes; pairs with nothing measurable are left out.
    let points: Vec<[f64; 2]> = sensitivity
        .holdout
        .iter()
        .filter_map(|m| {
            let predicted = sensitivity.fits.get(&m.player)?.predict(m.error);
            (predicted > 0.0 && m.kld > 0.0).then(|| [predicted.log10(), m.kld.log10()])
        })
        .collect();
    let (lo, hi) = points.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    PlotWidget::new("sensitivity")
        .height(170.0)
        .data_aspect(1.0)
        .x_axis_label("log10 predicted ΔKLD")
        .y_axis_label("log10 measured ΔKLD")
        .show(ui, |plot| {
            if lo.is_finite() {
                plot.line(
                    Line::new("predicted = measured", PlotPoints::from(vec![[lo, lo], [hi, hi]]))
                        .color(egui::Color32::GRAY),
                );
            }
            plot.points(
                Points::new("held out", PlotPoints::from(points))
                    .radius(4.0)
                    .color(egui::Color32::from_rgb(90, 170, 250)),
            );
        });
}

/// Long configuration summaries are cut to the column; the whole text shows on hover.
fn configuration_label(ui: &mut egui::Ui, text: &str) {
    ui.scope(|ui| {
        ui.set_max_width(300.0);
        ui.add(egui::Label::new(text).truncate()).on_hover_text(text);
    });
}
