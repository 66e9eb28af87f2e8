//! The selected tensor: a downsampled image of its importance and of its tier assignment, with legends.

use eframe::egui::{self, Color32, ColorImage, TextureHandle, TextureOptions, Vec2};
use nash_swarm::quant::summary::Thumbnail;

use super::app::ExplorerApp;
use super::heatmap_ui::colormap;

/// Textures of the selected tensor, rebuilt when the selection or the data changes.
#[derive(Default)]
pub struct Textures {
    key: Option<String>,
    importance: Option<TextureHandle>,
    bits: Option<TextureHandle>,
}

fn to_image(t: &Thumbnail, map: impl Fn(f32) -> Color32) -> ColorImage {
    let pixels: Vec<u8> = t.values.iter().flat_map(|v| map(*v).to_array()).collect();
    ColorImage::from_rgba_unmultiplied([t.width, t.height], &pixels)
}

/// Colours of the bit widths 2..16.
pub fn bits_color(bits: f32) -> Color32 {
    colormap((bits - 2.0) / 14.0)
}

pub fn tensor_ui(app: &mut ExplorerApp, ui: &mut egui::Ui) {
    let Some(analysis) = app.analysis.clone() else { return };
    let mut selected = app.selected.clone().unwrap_or_default();
    egui::ComboBox::new("tensor", "tensor").width(320.0).selected_text(&selected).show_ui(ui, |ui| {
        for name in analysis.tensors.keys() {
            ui.selectable_value(&mut selected, name.clone(), name);
        }
    });
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
            Some(ui.ctx().load_texture("importance", to_image(&scaled, colormap), TextureOptions::NEAREST));
        app.textures.bits =
            detail.map(|d| ui.ctx().load_texture("bits", to_image(&d.bits_image, bits_color), TextureOptions::NEAREST));
        app.textures.key = Some(selected.clone());
    }
    ui.label(format!("{} × {} · mean importance {:.3e}", info.rows, info.cols, info.mean_importance));
    let side = 160.0;
    let size = |t: &Thumbnail| {
        let aspect = t.width as f32 / t.height.max(1) as f32;
        if aspect >= 1.0 { Vec2::new(side, side / aspect) } else { Vec2::new(side * aspect, side) }
    };
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label("importance (log, mean per cell)");
            if let Some(t) = &app.textures.importance {
                ui.image((t.id(), size(&info.importance_image)));
            }
        });
        ui.vertical(|ui| {
            ui.label("tier bits (mean per cell)");
            match (&app.textures.bits, detail) {
                (Some(t), Some(d)) => {
                    ui.image((t.id(), size(&d.bits_image)));
                    ui.label(format!("{} · error {:.2e}", d.plan_label, d.relative_error));
                }
                _ => {
                    ui.weak("run to see the assignment");
                }
            }
        });
    });
    ui.horizontal(|ui| {
        for bits in [2.0, 3.0, 4.0, 6.0, 8.0, 16.0] {
            let (rect, _) = ui.allocate_exact_size(Vec2::splat(10.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 1.0, bits_color(bits));
            ui.label(format!("{bits}"));
        }
        ui.weak("bits");
    });
}
