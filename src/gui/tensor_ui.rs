//! The selected tensor: a downsampled image of its importance and of its tier assignment, with legends.

use eframe::egui::{self, Color32, ColorImage, TextureHandle, TextureOptions, Vec2};
use nash_swarm::quant::summary::Thumbnail;

use super::app::ExplorerApp;
use super::palette;
use super::readable::{natural_cmp, number};

/// Textures of the selected tensor, rebuilt when the selection or the data changes.
#[derive(Default)]
pub struct Textures {
    key: Option<String>,
    importance: Option<TextureHandle>,
    /// The importance image's log10 range, for its legend.
    importance_range: (f32, f32),
    bits: Option<TextureHandle>,
}

/// The tensor list's filter, kept between frames.
#[derive(Default)]
pub struct TensorSearch(pub String);

fn to_image(t: &Thumbnail, map: impl Fn(f32) -> Color32) -> ColorImage {
    let pixels: Vec<u8> = t.values.iter().flat_map(|v| map(*v).to_array()).collect();
    ColorImage::from_rgba_unmultiplied([t.width, t.height], &pixels)
}

/// The selected tensor's images, `side` points on their long side.
pub fn tensor_ui(app: &mut ExplorerApp, ui: &mut egui::Ui, side: f32) {
    let Some(analysis) = app.analysis.clone() else { return };
    let mut selected = app.selected.clone().unwrap_or_default();
    let search = &mut app.tensor_search.0;
    egui::ComboBox::new("tensor", "tensor")
        .width((ui.available_width() - 70.0).clamp(120.0, 320.0))
        .selected_text(&selected)
        .show_ui(ui, |ui| {
            ui.add(egui::TextEdit::singleline(search).hint_text("search: part of a name").desired_width(300.0));
            // Sorted only while the list is open, not every frame.
            let mut names: Vec<&String> = analysis.tensors.keys().collect();
            names.sort_by(|a, b| natural_cmp(a, b));
            let needle = search.to_lowercase();
            for name in names.into_iter().filter(|n| n.to_lowercase().contains(&needle)) {
                ui.selectable_value(&mut selected, name.clone(), name);
            }
        })
        .response
        .on_hover_text("the tensor shown here and in the histogram; click a heatmap cell to choose one too");
    if app.selected.as_deref() != Some(&selected) && !selected.is_empty() {
        app.selected = Some(selected.clone());
    }
    let Some(info) = analysis.tensors.get(&selected) else { return };
    let detail = app.detail.get(&selected);
    if app.textures.key.as_deref() != Some(&selected) || (app.textures.bits.is_none() && detail.is_some()) {
        let image = &info.importance_image;
        let logs: Vec<f32> = image.values.iter().map(|v| v.max(1e-12).log10()).collect();
        let (lo, hi) = logs.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let scaled =
            Thumbnail { values: logs.iter().map(|v| (v - lo) / (hi - lo).max(1e-6)).collect(), ..image.clone() };
        app.textures.importance =
            Some(ui.ctx().load_texture("importance", to_image(&scaled, palette::viridis), TextureOptions::NEAREST));
        app.textures.importance_range = (lo, hi);
        app.textures.bits = detail
            .map(|d| ui.ctx().load_texture("bits", to_image(&d.bits_image, palette::bits), TextureOptions::NEAREST));
        app.textures.key = Some(selected.clone());
    }
    ui.label(format!("{} × {} · mean importance {}", info.rows, info.cols, number(info.mean_importance as f64)));
    let size = |t: &Thumbnail| {
        let aspect = t.width as f32 / t.height.max(1) as f32;
        if aspect >= 1.0 { Vec2::new(side, side / aspect) } else { Vec2::new(side * aspect, side) }
    };
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label("importance (mean per cell)");
            if let Some(t) = &app.textures.importance {
                ui.image((t.id(), size(&info.importance_image)));
                let (lo, hi) = app.textures.importance_range;
                let real = |v: f32| number(10f64.powf(v as f64));
                ui.weak(format!("dark {} … bright {}", real(lo), real(hi)));
            }
        });
        ui.vertical(|ui| {
            let from = app.shown_run.map_or(String::new(), |i| format!(" in run {}", i + 1));
            ui.label(format!("tier bits{from} (mean per cell)"));
            match (&app.textures.bits, detail) {
                (Some(t), Some(d)) => {
                    ui.image((t.id(), size(&d.bits_image)));
                    ui.label(format!("{} · error {}", d.plan_label, number(d.relative_error)));
                }
                _ => {
                    ui.weak("Run to see where each tier's weights are");
                }
            }
        });
    });
    super::heatmap_ui::bits_legend(ui);
}
