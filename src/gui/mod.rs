//! The desktop explorer: an eframe window that is a view over the library's chain (load -> importance ->
//! plan -> quantize -> evaluate -> export). Long work runs on worker threads (`worker.rs`); panels draw the
//! state and return what the user asked for.

mod analysis;
mod app;
mod budget;
mod dialogs;
mod file_picker;
mod heatmap_ui;
mod histogram_ui;
mod palette;
mod readable;
mod results_ui;
mod settings_ui;
mod state;
mod status_ui;
mod tensor_ui;
#[cfg(test)]
mod tests;
mod worker;

use std::path::PathBuf;

pub use app::{ExplorerApp, Launch};
pub use dialogs::NativeDialogs;

pub fn run(model: Option<PathBuf>, text: Option<PathBuf>) -> anyhow::Result<()> {
    worker::return_large_blocks_at_once();
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1480.0, 920.0])
            .with_title("Nash-Swarm Explorer"),
        ..Default::default()
    };
    let launch = Launch { model, text, dialogs: Box::new(NativeDialogs), show_frame_time: true };
    eframe::run_native("Nash-Swarm Explorer", options, Box::new(move |cc| Ok(Box::new(ExplorerApp::new(cc, launch)))))
        .map_err(|e| anyhow::anyhow!("the window could not open: {e}"))
}
