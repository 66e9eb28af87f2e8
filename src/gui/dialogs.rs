//! What the explorer asks a file dialog for, and the system's dialogs. When the system cannot show one (no
//! desktop portal and no zenity: rfd then returns nothing at once), the explorer opens its own picker instead
//! (`file_picker.rs`) and says why, so a user is never left with a button that does nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nash_swarm::quant::ggml::preset::Preset;

/// Why a path is asked for; the answer goes back to the command that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    ModelFile,
    ModelFolder,
    Text,
    ImportConfig,
    ExportConfig,
    ExportModel,
    ExportHf,
    ExportGguf(Preset),
    ExportReport,
}

/// The kind of dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An existing file; `extensions` filter the listing (empty: any file).
    OpenFile {
        extensions: &'static [&'static str],
    },
    OpenFolder,
    SaveFile {
        default_name: String,
    },
    /// A folder to write into (new, or empty, or an earlier export).
    SaveFolder {
        default_name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub purpose: Purpose,
    pub title: String,
    pub shape: Shape,
}

impl Request {
    pub fn new(purpose: Purpose, default_stem: &str) -> Request {
        let open = |extensions| Shape::OpenFile { extensions };
        let save = |name: String| Shape::SaveFile { default_name: name };
        let folder = |name: String| Shape::SaveFolder { default_name: name };
        let (title, shape) = match purpose {
            Purpose::ModelFile => ("Open a GGUF model", open(&["gguf"][..])),
            Purpose::ModelFolder => ("Open a Hugging Face model folder (or a packed export)", Shape::OpenFolder),
            Purpose::Text => ("Open an evaluation text (UTF-8)", open(&[])),
            Purpose::ImportConfig => ("Import a configuration", open(&["toml", "json"])),
            Purpose::ExportConfig => ("Export the configuration", save("quantization.toml".into())),
            Purpose::ExportModel => {
                ("Export the quantized model into a new folder", folder(format!("{default_stem}-packed")))
            }
            Purpose::ExportHf => ("Export as a Hugging Face fp16 folder", folder(format!("{default_stem}-hf"))),
            Purpose::ExportGguf(preset) => {
                ("Export as GGUF (runs in llama.cpp)", save(format!("{default_stem}-{}.gguf", preset.name)))
            }
            Purpose::ExportReport => {
                ("Export the report (Markdown; a CSV is written beside it)", save("report.md".into()))
            }
        };
        Request { purpose, title: title.into(), shape }
    }
}

/// A dialog's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Picked {
    Chosen(PathBuf),
    Cancelled,
    /// No dialog could be shown, and why.
    Unavailable(String),
}

/// File dialogs, behind a trait so tests can answer them.
pub trait Dialogs {
    fn pick(&self, request: &Request) -> Picked;
}

pub struct NativeDialogs;

/// No person closes a dialog this fast: an empty answer this quick means it never showed.
const FASTEST_HUMAN_ANSWER: Duration = Duration::from_millis(250);

impl Dialogs for NativeDialogs {
    fn pick(&self, request: &Request) -> Picked {
        if let Some(why) = system_dialogs_missing() {
            return Picked::Unavailable(why);
        }
        let started = Instant::now();
        let dialog = rfd::FileDialog::new().set_title(&request.title);
        let answer = match &request.shape {
            Shape::OpenFile { extensions: [] } => dialog.pick_file(),
            Shape::OpenFile { extensions } => dialog.add_filter(extensions.join(", "), extensions).pick_file(),
            Shape::OpenFolder => dialog.pick_folder(),
            Shape::SaveFile { default_name } => dialog.set_file_name(default_name).save_file(),
            Shape::SaveFolder { .. } => dialog.pick_folder(),
        };
        match answer {
            Some(path) => Picked::Chosen(path),
            None if started.elapsed() < FASTEST_HUMAN_ANSWER => {
                Picked::Unavailable("the system's file dialog closed at once (no desktop portal answered)".into())
            }
            None => Picked::Cancelled,
        }
    }
}

/// Why the system cannot show a file dialog, when that can be told beforehand: on Linux rfd asks the desktop
/// portal over the D-Bus session bus and falls back to zenity.
fn system_dialogs_missing() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).join("bus").exists());
    let zenity = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("zenity").is_file()));
    (!bus && !zenity).then(|| "no desktop portal (no D-Bus session) and no zenity".to_string())
}
