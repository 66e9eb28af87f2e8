//! This session's runs and the baselines: a table (click a run to restore its configuration) and a Pareto
//! plot of true bits per weight against perplexity.

use eframe::egui;
use egui_plot::{HLine, Legend, Plot, PlotPoints, Points};

use super::app::{Command, ExplorerApp};

const PARETO_WIDTH: f32 = 380.0;

pub fn results_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    // The plot keeps a fixed panel; the table takes the rest and scrolls inside it.
    egui::Panel::right("pareto_panel").exact_size(PARETO_WIDTH).resizable(false).show(ui, |ui| pareto_ui(app, ui));
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
                    configuration_label(ui, &run.config.summary());
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
    Plot::new("pareto")
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

/// Long configuration summaries are cut to the column; the whole text shows on hover.
fn configuration_label(ui: &mut egui::Ui, text: &str) {
    ui.scope(|ui| {
        ui.set_max_width(300.0);
        ui.add(egui::Label::new(text).truncate()).on_hover_text(text);
    });
}
