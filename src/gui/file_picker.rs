//! The explorer's own file picker, for when the system's dialog cannot open: a path field that completes as
//! one types (Tab takes the longest common prefix), the folder's listing filtered by what was typed, and the
//! recent models. Model folders (a config.json inside, or a packed export) are marked.

use std::path::{Path, PathBuf};

use eframe::egui;

use super::dialogs::{Request, Shape};
use super::readable::natural_cmp;

pub struct FilePicker {
    pub request: Request,
    /// Why the system's dialog was not used, told to the user.
    pub why: String,
    /// The path field: a folder ending in `/` lists that folder; otherwise its parent, filtered by the name's start.
    pub typed: String,
    listing: Listing,
    problem: Option<String>,
    focus_field: bool,
    /// An existing file the user was told about: a second Save replaces it.
    replace: Option<PathBuf>,
}

/// A folder's entries, read once per folder.
#[derive(Default)]
struct Listing {
    dir: PathBuf,
    entries: Vec<Entry>,
    error: Option<String>,
}

struct Entry {
    name: String,
    is_dir: bool,
    /// A Hugging Face folder or a packed export: what "Open model folder" wants.
    model_folder: bool,
}

pub enum Picking {
    Open,
    Chosen(PathBuf),
    Cancelled,
}

impl FilePicker {
    pub fn new(request: Request, why: String, start: &Path) -> FilePicker {
        let mut typed = with_slash(start);
        if let Shape::SaveFile { default_name } | Shape::SaveFolder { default_name } = &request.shape {
            typed.push_str(default_name);
        }
        FilePicker { request, why, typed, listing: Listing::default(), problem: None, focus_field: true, replace: None }
    }

    /// The folder being listed and the start of the names shown.
    fn split_typed(&self) -> (PathBuf, String) {
        let typed = expand_home(&self.typed);
        if self.typed.ends_with('/') || self.typed.is_empty() {
            return (typed, String::new());
        }
        let dir = typed.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let start = typed.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (dir, start)
    }

    fn shown(&self, start: &str) -> Vec<&Entry> {
        let extensions = match &self.request.shape {
            Shape::OpenFile { extensions } => *extensions,
            Shape::OpenFolder | Shape::SaveFolder { .. } => &["\0folders only"],
            Shape::SaveFile { .. } => &[],
        };
        let wanted = |e: &Entry| {
            e.is_dir
                || extensions.is_empty()
                || Path::new(&e.name).extension().is_some_and(|x| extensions.iter().any(|w| x.eq_ignore_ascii_case(w)))
        };
        let hidden_ok = start.starts_with('.');
        self.listing
            .entries
            .iter()
            .filter(|e| e.name.starts_with(start) && (hidden_ok || !e.name.starts_with('.')) && wanted(e))
            .collect()
    }

    /// Draws the picker as a modal window; says when the user chose or cancelled.
    pub fn show(&mut self, ctx: &egui::Context, recent: &[PathBuf]) -> Picking {
        let (dir, start) = self.split_typed();
        if self.listing.dir != dir || (self.listing.entries.is_empty() && self.listing.error.is_none()) {
            self.listing = Listing::read(&dir);
        }
        let mut outcome = Picking::Open;
        let modal = egui::Modal::new(egui::Id::unique("file_picker")).show(ctx, |ui| {
            ui.set_width(620.0);
            ui.heading(&self.request.title);
            ui.weak(format!("The system's file dialog could not open ({}), so choose here.", self.why));
            ui.add_space(6.0);
            outcome = self.path_row(ui, &start);
            ui.add_space(4.0);
            if let Some(e) = &self.listing.error {
                ui.colored_label(super::app::PROBLEM_COLOR, e);
            }
            if let Some(path) = self.entries_ui(ui, &dir, &start) {
                outcome = self.confirm(path);
            }
            self.recent_ui(ui, recent);
            if let Some(p) = &self.problem {
                ui.colored_label(super::app::PROBLEM_COLOR, p);
            }
            ui.separator();
            ui.horizontal(|ui| {
                if ui.button(self.confirm_label()).clicked() {
                    outcome = self.confirm(expand_home(&self.typed));
                }
                if ui.button("Cancel").clicked() {
                    outcome = Picking::Cancelled;
                }
            });
        });
        if modal.should_close() && matches!(outcome, Picking::Open) {
            outcome = Picking::Cancelled;
        }
        outcome
    }

    fn path_row(&mut self, ui: &mut egui::Ui, start: &str) -> Picking {
        let mut outcome = Picking::Open;
        ui.horizontal(|ui| {
            let label = ui.label("path");
            if ui.small_button("up").on_hover_text("the folder above").clicked() {
                let (listed, _) = self.split_typed();
                self.typed = with_slash(listed.parent().unwrap_or(&listed));
            }
            if ui.small_button("~").on_hover_text("your home folder").clicked() {
                self.typed = std::env::var_os("HOME").map_or("/".into(), |h| with_slash(Path::new(&h)));
            }
            let field = egui::TextEdit::singleline(&mut self.typed)
                .desired_width(f32::INFINITY)
                .lock_focus(true)
                .hint_text("type a path; Tab completes");
            let response = ui.add(field).labelled_by(label.id);
            if self.focus_field {
                response.request_focus();
                self.focus_field = false;
            }
            if response.has_focus() && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Tab)) {
                self.complete(start);
            }
            if response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                outcome = self.confirm(expand_home(&self.typed));
                self.focus_field = true;
            }
            if response.changed() {
                self.problem = None;
            }
        });
        outcome
    }

    /// Tab: the longest start all shown names share; a single folder is entered.
    fn complete(&mut self, start: &str) {
        let shown = self.shown(start);
        let Some(first) = shown.first() else { return };
        let mut common = first.name.clone();
        for e in &shown[1..] {
            let same = common.chars().zip(e.name.chars()).take_while(|(a, b)| a == b).count();
            common = common.chars().take(same).collect();
        }
        let base = &self.typed[..self.typed.len() - start.len()];
        let enter = shown.len() == 1 && first.is_dir;
        self.typed = format!("{base}{common}{}", if enter { "/" } else { "" });
    }

    fn entries_ui(&mut self, ui: &mut egui::Ui, dir: &Path, start: &str) -> Option<PathBuf> {
        let mut chosen = None;
        let mut navigate = None;
        egui::ScrollArea::vertical().max_height(300.0).auto_shrink([false, true]).show(ui, |ui| {
            let shown = self.shown(start);
            if shown.is_empty() && self.listing.error.is_none() {
                ui.weak("nothing here matches");
            }
            for e in shown {
                let text = match (e.is_dir, e.model_folder) {
                    (true, true) => format!("{}/   (model folder)", e.name),
                    (true, false) => format!("{}/", e.name),
                    (false, _) => e.name.clone(),
                };
                let response = ui.selectable_label(false, text);
                if response.double_clicked() {
                    chosen = Some(dir.join(&e.name));
                } else if response.clicked() {
                    navigate = Some((dir.join(&e.name), e.is_dir));
                }
            }
        });
        if let Some((path, is_dir)) = navigate {
            self.typed = if is_dir { with_slash(&path) } else { path.display().to_string() };
            self.problem = None;
        }
        chosen
    }

    fn recent_ui(&mut self, ui: &mut egui::Ui, recent: &[PathBuf]) {
        let models = matches!(self.request.shape, Shape::OpenFile { extensions: ["gguf"] } | Shape::OpenFolder);
        if !models || recent.is_empty() {
            return;
        }
        ui.add_space(4.0);
        ui.horizontal_wrapped(|ui| {
            ui.weak("recent:");
            for path in recent {
                let name = nash_swarm::model::display_name(path);
                if ui.small_button(name).on_hover_text(path.display().to_string()).clicked() {
                    self.typed = path.display().to_string();
                }
            }
        });
    }

    fn confirm_label(&self) -> &'static str {
        match self.request.shape {
            Shape::OpenFile { .. } => "Open",
            Shape::OpenFolder => "Open this folder",
            Shape::SaveFile { .. } => "Save",
            Shape::SaveFolder { .. } => "Write into this folder",
        }
    }

    /// Accepts `path` when it fits the request; a folder given for a file is entered instead.
    fn confirm(&mut self, path: PathBuf) -> Picking {
        let problem = match &self.request.shape {
            Shape::OpenFile { .. } if path.is_dir() => {
                self.typed = with_slash(&path);
                return Picking::Open;
            }
            Shape::OpenFile { .. } if !path.is_file() => Some(format!("{} is not a file", path.display())),
            Shape::OpenFolder if !path.is_dir() => Some(format!("{} is not a folder", path.display())),
            Shape::SaveFile { .. } if path.is_dir() => {
                self.typed = with_slash(&path);
                return Picking::Open;
            }
            Shape::SaveFile { .. } | Shape::SaveFolder { .. } if !parent_exists(&path) => {
                Some(format!("the folder {} does not exist", path.parent().unwrap_or(&path).display()))
            }
            Shape::SaveFile { .. } if path.is_file() && self.replace.as_ref() != Some(&path) => {
                self.replace = Some(path.clone());
                Some(format!("{} exists: Save again to replace it", path.display()))
            }
            _ => None,
        };
        match problem {
            Some(p) => {
                self.problem = Some(p);
                Picking::Open
            }
            None => Picking::Chosen(path),
        }
    }
}

impl Listing {
    fn read(dir: &Path) -> Listing {
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) => {
                return Listing {
                    dir: dir.into(),
                    entries: Vec::new(),
                    error: Some(format!("{}: {e}", dir.display())),
                };
            }
        };
        let mut entries: Vec<Entry> = read
            .filter_map(|e| e.ok())
            .map(|e| {
                let path = e.path();
                let is_dir = path.is_dir();
                let model_folder =
                    is_dir && (path.join("config.json").is_file() || nash_swarm::formats::packed::is_packed_dir(&path));
                Entry { name: e.file_name().to_string_lossy().into_owned(), is_dir, model_folder }
            })
            .collect();
        entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| natural_cmp(&a.name, &b.name)));
        Listing { dir: dir.into(), entries, error: None }
    }
}

fn with_slash(dir: &Path) -> String {
    let mut s = dir.display().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

fn expand_home(typed: &str) -> PathBuf {
    match (typed.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(typed),
    }
}

fn parent_exists(path: &Path) -> bool {
    path.parent().is_none_or(|p| p.as_os_str().is_empty() || p.is_dir())
}
