//! The status bar across the window's foot: one line per running job (its step, k of n, elapsed and remaining
//! time, the running PPL, Cancel), then problems and the latest notice.

use eframe::egui;

use super::app::{Command, ExplorerApp, PROBLEM_COLOR};
use super::readable::{duration, number};
use super::worker::JobKind;

pub fn status_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) -> Vec<Command> {
    let mut commands = Vec::new();
    for kind in app.jobs.running_kinds() {
        job_line(app, ui, kind, &mut commands);
    }
    let mut dismiss = None;
    for (i, p) in app.problems.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui.small_button("x").on_hover_text("dismiss").clicked() {
                dismiss = Some(i);
            }
            // One line each (the bar is sized by its lines); the whole text on hover.
            let text = egui::RichText::new(p).color(PROBLEM_COLOR);
            ui.add(egui::Label::new(text).truncate()).on_hover_text(p);
        });
    }
    if let Some(i) = dismiss {
        app.problems.remove(i);
    }
    if let Some(last) = app.notices.last() {
        ui.add(egui::Label::new(egui::RichText::new(last).weak()).truncate()).on_hover_text(last);
    }
    commands
}

fn job_line(app: &ExplorerApp, ui: &mut egui::Ui, kind: JobKind, commands: &mut Vec<Command>) {
    let Some(status) = app.jobs.status(kind) else { return };
    let mut parts = Vec::new();
    if kind == JobKind::Baselines {
        let (done, planned) = app.baseline_rows_progress();
        parts.push(format!("row {} of {planned}", (done + 1).min(planned)));
    }
    let mut fraction = 0.0;
    if let Some(p) = status.progress {
        parts.push(if p.total > 1 { format!("{} {} of {}", p.stage, p.done, p.total) } else { p.stage.clone() });
        fraction = if p.total == 0 { 0.0 } else { p.done as f32 / p.total as f32 };
        if let Some(ppl) = p.estimate {
            parts.push(format!("PPL so far {}", number(ppl)));
        }
    }
    parts.push(format!("{} elapsed", duration(status.elapsed)));
    if let Some(left) = status.stage_left {
        parts.push(format!("~{} left in this step", duration(left)));
    }
    // No spinner: its animation would repaint every frame while a job runs (a software renderer then takes the
    // cores the job needs); the elapsed time moves at the 10 Hz repaint jobs ask for.
    ui.horizontal(|ui| {
        ui.strong(kind.title());
        if ui.small_button("Cancel").on_hover_text("stop this job (Esc stops every job)").clicked() {
            commands.push(Command::Cancel(kind));
        }
        ui.add(egui::ProgressBar::new(fraction).desired_width(140.0));
        ui.label(parts.join(" · "));
    });
}
