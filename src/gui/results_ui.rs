//! This session's runs and the baselines: a table (fixed method column, sticky sortable header, long text elided
//! with the whole on hover; click a run to restore its configuration), a Pareto plot of true bits per parameter
//! against PPL or KLD (both log axes), and the latest Nash measurement's predicted against measured ΔKLD.

use eframe::egui::{self, Color32, RichText};
use egui_extras::{Column, TableBuilder};
use egui_plot::{HLine, HoverPosition, Line, Plot as PlotWidget, PlotPoints, Points};
use nash_swarm::alloc::sensitivity::Sensitivity;
use nash_swarm::quant::QuantizerKind;

use super::app::{Command, ExplorerApp};
use super::readable::{change_pct, log_marks, number, tick};

/// The allocation's predicted curve and its budget marker.
const PREDICTED: Color32 = Color32::from_rgb(200, 120, 220);

/// Which plot the results' side panel shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plot {
    #[default]
    Pareto,
    /// The latest measured allocation's held-out pairs.
    Sensitivity,
    /// The table itself, when the window is too narrow for it and a plot side by side.
    Table,
}

/// The Pareto plot's loss axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Loss {
    #[default]
    Ppl,
    Kld,
}

/// The table's columns after the method: name, tooltip (with the unit).
const COLUMNS: [(&str, &str); 8] = [
    ("made by", "how the row was quantized: grid fitting, how the allocation priced, what calibrated it"),
    ("configuration", "the settings of the row (hover for the whole text)"),
    ("bpw", "true bits per parameter of the whole model, everything stored counted"),
    ("size MB", "the quantized model's size in megabytes"),
    ("PPL", "perplexity on the evaluation windows (lower is better)"),
    ("ΔPPL", "perplexity change against the unquantized model; past +1000 % as a factor"),
    ("KLD", "mean KL divergence from the unquantized model's next-token distribution, in nats per token"),
    ("top-1", "share of tokens where the quantized model's most likely next token is the unquantized one's"),
];

/// A row of either group, as the table and plot show it.
pub struct ResultRow {
    /// The run's index, for runs; None for baselines.
    pub run: Option<usize>,
    pub method: String,
    pub made_by: String,
    pub configuration: String,
    pub true_bpw: f64,
    pub size_bytes: u64,
    pub ppl: f64,
    pub delta_ppl_pct: f64,
    pub kld: f64,
    pub top1: f64,
}

impl ResultRow {
    fn value(&self, column: usize) -> f64 {
        match column {
            2 => self.true_bpw,
            3 => self.size_bytes as f64,
            4 => self.ppl,
            5 => self.delta_ppl_pct,
            6 => self.kld,
            7 => self.top1,
            _ => f64::NAN,
        }
    }

    fn text(&self, column: usize) -> &str {
        if column == 0 { &self.made_by } else { &self.configuration }
    }

    pub fn loss(&self, loss: Loss) -> f64 {
        match loss {
            Loss::Ppl => self.ppl,
            Loss::Kld => self.kld,
        }
    }

    fn is_llama_cpp(&self) -> bool {
        self.method.starts_with("gguf-")
    }
}

/// How the table is ordered and which row is picked.
#[derive(Default)]
pub struct TableState {
    /// Column index into `COLUMNS` and whether ascending.
    pub sort: Option<(usize, bool)>,
    /// The row picked in the table or the plot, by method name.
    pub picked: Option<String>,
    pub loss: Loss,
    /// Runs marked for comparison (at most two, the latest marks kept): the heatmap shows their bit difference.
    pub compared: Vec<usize>,
    /// Where each row's point was drawn in the Pareto plot (screen coordinates): tests hover them.
    pub points: Vec<(String, egui::Pos2)>,
}

/// The two groups of rows, made once a frame for the table and the plot.
pub struct Rows {
    pub runs: Vec<ResultRow>,
    pub baselines: Vec<ResultRow>,
}

impl Rows {
    fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.baselines.is_empty()
    }
}

/// Runs first, then the baselines (the unquantized reference row left out), each group in the order made.
pub fn rows(app: &ExplorerApp) -> Rows {
    let runs = app
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| ResultRow {
            run: Some(i),
            method: format!("run {}", i + 1),
            made_by: run_made_by(r.config.quantizer, r.prices.as_deref(), r.config.overrides.is_empty()),
            configuration: r.config.summary(),
            true_bpw: r.bits.true_bpw,
            size_bytes: r.size_bytes,
            ppl: r.ppl,
            delta_ppl_pct: r.delta_ppl_pct,
            kld: r.kld.mean,
            top1: r.kld.top1_agreement,
        })
        .collect();
    let baselines = app
        .baselines
        .iter()
        .skip(1)
        .map(|r| ResultRow {
            run: None,
            method: r.method.clone(),
            made_by: baseline_made_by(&r.method),
            configuration: r.configuration.clone(),
            true_bpw: r.true_bpw,
            size_bytes: r.size_bytes,
            ppl: r.ppl,
            delta_ppl_pct: r.delta_ppl_pct,
            kld: r.kld_mean,
            top1: r.top1_agreement,
        })
        .collect();
    Rows { runs, baselines }
}

fn quantizer_words(q: QuantizerKind) -> &'static str {
    match q {
        QuantizerKind::Rtn => "min-max grids",
        QuantizerKind::LeastSquares => "least-squares grids",
        QuantizerKind::Gptq => "GPTQ",
    }
}

fn run_made_by(quantizer: QuantizerKind, prices: Option<&str>, tiers: bool) -> String {
    let how = if tiers { "your tiers".to_string() } else { format!("Nash, {}", prices.unwrap_or("per-tensor plans")) };
    let calibrated = if quantizer == QuantizerKind::Rtn { "" } else { ", calibrated on the text's end" };
    format!("{how}; {}{calibrated}", quantizer_words(quantizer))
}

/// How compare made a baseline row, read from its method name (compare's names are fixed).
fn baseline_made_by(method: &str) -> String {
    let text_end = "calibrated on the text's end";
    if let Some(preset) = method.strip_prefix("gguf-") {
        return match preset.strip_suffix("+imatrix") {
            Some(p) => format!("llama.cpp {p} block types by our encoder, imatrix from the text's end"),
            None => format!("llama.cpp {preset} block types by our encoder"),
        };
    }
    if method.starts_with("nash-measured@") {
        return format!("Nash, measured ΔKLD prices; least squares, {text_end}");
    }
    if method.starts_with("nash@") {
        return format!("Nash, weight-error prices; least squares, {text_end}");
    }
    if method.starts_with("random") {
        return "random importance (ablation); min-max grids".into();
    }
    if method.ends_with("-gptq") {
        return format!("GPTQ, {text_end}");
    }
    if method.ends_with("-ls") || method.ends_with("-least-squares") {
        return format!("least squares, {text_end}");
    }
    "min-max grids".into()
}

pub fn results_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    let rows = rows(app);
    // Narrow windows show the table or a plot, chosen by tabs; wide ones show the plot beside the table.
    if ui.available_width() < 900.0 {
        plot_tabs(app, ui, true);
        match app.plot {
            Plot::Table => table_ui(app, ui, rows, &mut commands),
            _ => plot_ui(app, ui, &rows),
        }
        return commands;
    }
    let plot_width = (ui.available_width() * 0.3).clamp(250.0, 420.0);
    egui::Panel::right("pareto_panel").exact_size(plot_width).resizable(false).show(ui, |ui| {
        plot_tabs(app, ui, false);
        plot_ui(app, ui, &rows);
    });
    egui::CentralPanel::default().show(ui, |ui| table_ui(app, ui, rows, &mut commands));
    commands
}

fn plot_tabs(app: &mut ExplorerApp, ui: &mut egui::Ui, with_table: bool) {
    let measured = app.allocation.as_ref().is_some_and(|a| a.sensitivity.is_some());
    if !with_table && app.plot == Plot::Table {
        app.plot = Plot::Pareto;
    }
    ui.horizontal(|ui| {
        if with_table {
            ui.selectable_value(&mut app.plot, Plot::Table, "Table").on_hover_text("every row's figures");
        }
        ui.selectable_value(&mut app.plot, Plot::Pareto, "Pareto").on_hover_text("size against loss, every row");
        if measured {
            ui.selectable_value(&mut app.plot, Plot::Sensitivity, "Sensitivity")
                .on_hover_text("the allocation's predicted ΔKLD against the measured, on held-out tensors");
        }
        if app.plot == Plot::Pareto {
            ui.separator();
            ui.selectable_value(&mut app.table.loss, Loss::Ppl, "PPL").on_hover_text("perplexity on the loss axis");
            ui.selectable_value(&mut app.table.loss, Loss::Kld, "KLD").on_hover_text(
                "KL divergence from the unquantized model on the loss axis (the allocation predicts it)",
            );
        }
    });
}

fn plot_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, rows: &Rows) {
    match (app.plot, app.allocation.as_ref().and_then(|a| a.sensitivity.clone())) {
        (Plot::Sensitivity, Some(sensitivity)) => sensitivity_ui(&sensitivity, ui),
        _ => pareto_ui(app, ui, rows),
    }
}

fn table_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, rows: Rows, commands: &mut Vec<Command>) {
    if rows.is_empty() {
        ui.heading("Results");
        ui.weak("Run (Ctrl+R) evaluates the current settings; Baselines adds reference rows at equal sizes.");
        return;
    }
    let Rows { mut runs, mut baselines } = rows;
    if let Some((column, ascending)) = app.table.sort {
        for group in [&mut runs, &mut baselines] {
            group.sort_by(|a, b| {
                let order = match column {
                    0 | 1 => a.text(column).cmp(b.text(column)),
                    _ => a.value(column).total_cmp(&b.value(column)),
                };
                if ascending { order } else { order.reverse() }
            });
        }
    }
    let base_ppl = app.base_ppl.map_or(String::new(), |p| format!(" · unquantized PPL {}", number(p)));
    ui.horizontal(|ui| {
        ui.heading("Results");
        ui.weak(format!("{} runs · {} baselines{base_ppl}", runs.len(), baselines.len()));
    });
    // The numbers keep their width; the method and the two texts share the rest and elide (whole on hover).
    let width = ui.available_width();
    let numeric = Column::initial(52.0).at_least(40.0).clip(true).resizable(true);
    // Column widths are remembered per width band: a resized window lays the columns out afresh.
    let table = TableBuilder::new(ui)
        .id_salt(("results table", (width / 40.0) as i32))
        .striped(true)
        .resizable(true)
        .auto_shrink([false, true])
        .column(Column::initial((width * 0.15).max(56.0)).at_least(48.0).clip(true).resizable(true))
        .column(Column::initial((width * 0.15).max(56.0)).at_least(48.0).clip(true).resizable(true))
        .column(Column::remainder().at_least(48.0).clip(true))
        .columns(numeric, 6)
        .max_scroll_height(f32::INFINITY);
    table
        .header(20.0, |mut header| {
            header.col(|ui| {
                ui.strong("method").on_hover_text("runs of this session (click to restore), then the baselines");
            });
            for (i, (name, tip)) in COLUMNS.iter().enumerate() {
                header.col(|ui| {
                    let arrow = match app.table.sort {
                        Some((c, true)) if c == i => " ^",
                        Some((c, false)) if c == i => " v",
                        _ => "",
                    };
                    let clicked = ui
                        .add(
                            egui::Label::new(RichText::new(format!("{name}{arrow}")).strong())
                                .sense(egui::Sense::click()),
                        )
                        .on_hover_text(format!("{tip} (click to sort)"))
                        .clicked();
                    if clicked {
                        app.table.sort = match app.table.sort {
                            Some((c, true)) if c == i => Some((i, false)),
                            Some((c, false)) if c == i => None,
                            _ => Some((i, true)),
                        };
                    }
                });
            }
        })
        .body(|mut body| {
            for (title, group) in [("your runs", &runs), ("baselines", &baselines)] {
                if group.is_empty() {
                    continue;
                }
                body.row(18.0, |mut row| {
                    row.col(|ui| {
                        ui.weak(title);
                    });
                    for _ in 0..COLUMNS.len() {
                        row.col(|_| {});
                    }
                });
                for r in group.iter() {
                    body.row(20.0, |mut row| {
                        row.set_selected(app.table.picked.as_deref() == Some(&r.method));
                        row_cells(&mut row, r, &mut app.table, commands);
                    });
                }
            }
        });
}

fn row_cells(
    row: &mut egui_extras::TableRow<'_, '_>,
    r: &ResultRow,
    table: &mut TableState,
    commands: &mut Vec<Command>,
) {
    let picked = &mut table.picked;
    row.col(|ui| match r.run {
        Some(i) => {
            ui.horizontal(|ui| {
                let tip = "restore this run's configuration (and show its tensors)";
                if ui.button(&r.method).on_hover_text(tip).clicked() {
                    commands.push(Command::Restore(i));
                    *picked = Some(r.method.clone());
                }
                let marked = table.compared.contains(&i);
                let tip = "mark two runs to see, in the heatmap, where their bits differ";
                if ui.selectable_label(marked, "vs").on_hover_text(tip).clicked() {
                    commands.push(Command::Compare(i));
                }
            });
        }
        None => {
            if ui
                .add(egui::Label::new(&r.method).truncate().sense(egui::Sense::click()))
                .on_hover_text(&r.method)
                .clicked()
            {
                *picked = Some(r.method.clone());
            }
        }
    });
    for text in [&r.made_by, &r.configuration] {
        row.col(|ui| {
            ui.add(egui::Label::new(text).truncate()).on_hover_text(text);
        });
    }
    let cells = [
        number(r.true_bpw),
        number(r.size_bytes as f64 / 1e6),
        number(r.ppl),
        change_pct(r.delta_ppl_pct),
        number(r.kld),
        format!("{:.1}%", r.top1 * 100.0),
    ];
    for (i, cell) in cells.into_iter().enumerate() {
        row.col(|ui| {
            if i == 4 {
                // KLD shaded: from clear at 0.001 nats to strong red at 1 and beyond.
                let strength = ((r.kld.max(1e-6).log10() + 3.0) / 3.0).clamp(0.0, 1.0);
                let rect = ui.max_rect();
                ui.painter().rect_filled(
                    rect,
                    0.0,
                    Color32::from_rgba_unmultiplied(220, 60, 50, (strength * 110.0) as u8),
                );
            }
            ui.label(cell);
        });
    }
}

fn pareto_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, rows: &Rows) {
    let Rows { runs, baselines } = rows;
    let loss = app.table.loss;
    let predicted = app.allocation.as_ref().map(|a| a.predicted_curve.clone()).unwrap_or_default();
    if rows.is_empty() && predicted.is_empty() {
        ui.add_space(20.0);
        ui.weak("Each Run and each Baselines row lands here: its true bits per parameter against its loss.");
        ui.weak("Lower and further left is better; the line joins the rows nothing beats.");
        return;
    }
    let point = |r: &ResultRow| [r.true_bpw.log10(), r.loss(loss).max(1e-9).log10()];
    let (ours, llama): (Vec<&ResultRow>, Vec<&ResultRow>) = baselines.iter().partition(|r| !r.is_llama_cpp());
    let series: [(&str, Vec<&ResultRow>, Color32); 3] = [
        ("runs", runs.iter().collect(), Color32::from_rgb(90, 170, 250)),
        ("baselines", ours, Color32::from_rgb(230, 150, 60)),
        ("llama.cpp presets", llama, Color32::from_rgb(120, 200, 110)),
    ];
    let all: Vec<&ResultRow> = series.iter().flat_map(|(_, rows, _)| rows.iter().copied()).collect();
    let frontier = pareto_frontier(&all, loss);
    let curve: Vec<[f64; 2]> = match loss {
        Loss::Kld => predicted.iter().filter(|p| p[1] > 0.0).map(|p| [p[0].log10(), p[1].log10()]).collect(),
        Loss::Ppl => Vec::new(),
    };
    let marker =
        app.allocation_in_use().filter(|a| loss == Loss::Kld && a.sensitivity.is_some() && a.total_price > 0.0);
    let marker = marker.map(|a| [a.true_bpw.log10(), a.total_price.log10()]);
    let names: Vec<Vec<String>> =
        series.iter().map(|(_, rows, _)| rows.iter().map(|r| hover_text(r)).collect()).collect();
    let axis = match loss {
        Loss::Ppl => "perplexity (log)",
        Loss::Kld => "KLD, nats per token (log)",
    };
    // The series' colours in a line above the plot, where no legend can cover a point.
    ui.horizontal_wrapped(|ui| {
        let mut chip = |name: &str, colour: Color32| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().circle_filled(rect.center(), 4.0, colour);
            ui.label(name);
        };
        for (name, rows, colour) in &series {
            if !rows.is_empty() {
                chip(name, *colour);
            }
        }
        if frontier.len() > 1 {
            chip("frontier", Color32::from_gray(150));
        }
        if !curve.is_empty() {
            chip("predicted by the allocation", PREDICTED);
        }
    });
    let response = PlotWidget::new("pareto")
        // Room is left for the line under the plot: a plot taller than its panel would grow the panel every frame.
        .height((ui.available_height() - 26.0).clamp(80.0, 260.0))
        .set_margin_fraction(egui::vec2(0.08, 0.12))
        .include_x(2f64.log10())
        .include_x(16f64.log10())
        .x_axis_label("true bits per parameter (log)")
        .y_axis_label(axis)
        .x_grid_spacer(log_marks)
        .y_grid_spacer(log_marks)
        .x_axis_formatter(|mark, _| tick(10f64.powf(mark.value)))
        .y_axis_formatter(|mark, _| tick(10f64.powf(mark.value)))
        .label_formatter(|position| match position {
            HoverPosition::NearDataPoint { plot_name, index, .. } => {
                let s = series.iter().position(|(name, _, _)| name == plot_name)?;
                names[s].get(*index).cloned()
            }
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            if let (Some(base), Loss::Ppl) = (app.base_ppl, loss) {
                plot.hline(HLine::new("unquantized", base.log10()).color(Color32::GRAY));
            }
            if frontier.len() > 1 {
                let line: Vec<[f64; 2]> = frontier.iter().map(|r| point(r)).collect();
                plot.line(Line::new("frontier", PlotPoints::from(line)).color(Color32::from_gray(150)));
            }
            if !curve.is_empty() {
                plot.line(Line::new("predicted (allocation)", PlotPoints::from(curve.clone())).color(PREDICTED));
            }
            if let Some(m) = marker {
                plot.points(Points::new("budget", PlotPoints::from(vec![m])).radius(7.0).color(PREDICTED));
            }
            for (name, rows, colour) in &series {
                let points: Vec<[f64; 2]> = rows.iter().map(|r| point(r)).collect();
                plot.points(Points::new(*name, PlotPoints::from(points)).radius(5.0).color(*colour));
            }
        });
    // The row under the pointer is named under the plot; a click picks it (the table highlights it).
    let screen = |r: &ResultRow| response.transform.position_from_point(&point(r).into());
    app.table.points = all.iter().map(|r| (r.method.clone(), screen(r))).collect();
    let under = |pointer: egui::Pos2| {
        let near = all.iter().map(|r| (*r, screen(r).distance(pointer))).filter(|(_, d)| *d < 12.0);
        near.min_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r)
    };
    match response.response.hover_pos().and_then(under) {
        Some(r) => {
            ui.label(hover_text(r).replace('\n', ": "));
        }
        None => {
            ui.weak("hover a point for its figures, click to pick it");
        }
    }
    if response.response.clicked()
        && let Some(r) = response.response.interact_pointer_pos().and_then(under)
    {
        app.table.picked = Some(r.method.clone());
    }
}

fn hover_text(r: &ResultRow) -> String {
    format!(
        "{}\n{} bpw · PPL {} ({}) · KLD {} · top-1 {:.1}%",
        r.method,
        number(r.true_bpw),
        number(r.ppl),
        change_pct(r.delta_ppl_pct),
        number(r.kld),
        r.top1 * 100.0
    )
}

/// The rows no other row beats on both size and loss, from smallest to largest.
pub fn pareto_frontier<'a>(rows: &[&'a ResultRow], loss: Loss) -> Vec<&'a ResultRow> {
    let mut sorted: Vec<&ResultRow> = rows.iter().copied().filter(|r| r.loss(loss).is_finite()).collect();
    sorted.sort_by(|a, b| a.true_bpw.total_cmp(&b.true_bpw).then(a.loss(loss).total_cmp(&b.loss(loss))));
    let mut frontier: Vec<&ResultRow> = Vec::new();
    for r in sorted {
        if frontier.last().is_none_or(|best| r.loss(loss) < best.loss(loss)) {
            frontier.push(r);
        }
    }
    frontier
}

/// The held-out pairs of the latest measurement: each (tensor, strategy)'s ΔKLD predicted from its weight
/// error against the ΔKLD measured by running the model; on the diagonal, the price is right.
fn sensitivity_ui(sensitivity: &Sensitivity, ui: &mut egui::Ui) {
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
        .height((ui.available_height() - 8.0).clamp(80.0, 220.0))
        .data_aspect(1.0)
        .x_grid_spacer(log_marks)
        .y_grid_spacer(log_marks)
        .x_axis_label("predicted ΔKLD (log)")
        .y_axis_label("measured ΔKLD (log)")
        .x_axis_formatter(|mark, _| tick(10f64.powf(mark.value)))
        .y_axis_formatter(|mark, _| tick(10f64.powf(mark.value)))
        .show(ui, |plot| {
            if lo.is_finite() {
                plot.line(
                    Line::new("predicted = measured", PlotPoints::from(vec![[lo, lo], [hi, hi]])).color(Color32::GRAY),
                );
            }
            plot.points(
                Points::new("held out", PlotPoints::from(points)).radius(4.0).color(Color32::from_rgb(90, 170, 250)),
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, bpw: f64, ppl: f64) -> ResultRow {
        ResultRow {
            run: None,
            method: method.into(),
            made_by: String::new(),
            configuration: String::new(),
            true_bpw: bpw,
            size_bytes: 0,
            ppl,
            delta_ppl_pct: 0.0,
            kld: ppl / 100.0,
            top1: 0.9,
        }
    }

    #[test]
    fn the_frontier_keeps_the_rows_nothing_beats() {
        let rows =
            [row("a", 3.0, 90.0), row("b", 4.0, 40.0), row("c", 4.5, 60.0), row("d", 5.0, 38.0), row("e", 3.0, 95.0)];
        let refs: Vec<&ResultRow> = rows.iter().collect();
        let names: Vec<&str> = pareto_frontier(&refs, Loss::Ppl).iter().map(|r| r.method.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
    }

    #[test]
    fn every_baseline_says_how_it_was_made() {
        assert!(baseline_made_by("gguf-q4_k_m+imatrix").contains("imatrix"));
        assert!(baseline_made_by("nash-measured@4.250").contains("measured"));
        assert!(baseline_made_by("uniform-4bit-g128-gptq").starts_with("GPTQ"));
        assert!(baseline_made_by("seed-10/20/70-8/4/2-ls").starts_with("least squares"));
        assert_eq!(baseline_made_by("uniform-4bit-g128"), "min-max grids");
    }
}
