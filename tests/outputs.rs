//! Nothing a user gives the CLI is ever damaged: outputs that overlap an input or each other, existing files and
//! folders, and places that cannot be written are refused before any work, with exit code 1, a message naming
//! the flag and the problem, every input byte-identical afterwards and no temporary file left behind.

mod common;

use std::path::Path;

use common::*;

/// Runs the CLI, expects a refusal (exit 1, one line naming each of `parts`), and that nothing under `watched`
/// changed and no temporary file was left there.
fn refused(args: &[&str], watched: &Path, parts: &[&str]) {
    let before = tree_hashes(watched);
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1 for {args:?}; stderr: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1, "{args:?}: {stderr}");
    for part in parts {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
    assert_eq!(tree_hashes(watched), before, "{args:?} changed files under {}", watched.display());
    assert_eq!(leftovers(watched), Vec::<std::path::PathBuf>::new(), "{args:?} left temporary files");
}

fn succeeds(args: &[&str]) -> String {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch folder holding a copy of stories260k in `model/`.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(stories()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    (root, model)
}

fn quantize<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["quantize", "--model", model, "--preset", "uniform4", "--out", out];
    args.extend_from_slice(extra);
    args
}

#[test]
fn out_is_the_model_folder() {
    let (root, model) = workspace();
    refused(&quantize(s(&model), s(&model), &[]), root.path(), &["--out", "is the model"]);
}

#[test]
fn out_inside_the_model_folder() {
    let (root, model) = workspace();
    let inside = model.join("quantized");
    refused(&quantize(s(&model), s(&inside), &[]), root.path(), &["--out", "lies inside the model"]);
}

#[test]
fn out_containing_the_model_folder() {
    let (root, model) = workspace();
    refused(&quantize(s(&model), s(root.path()), &[]), root.path(), &["--out", "contains the model"]);
}

#[test]
fn out_through_a_symlink_to_the_model_folder() {
    let (root, model) = workspace();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    refused(&quantize(s(&model), s(&link), &[]), root.path(), &["--out", "is the model"]);
}

#[test]
fn model_named_by_a_file_inside_its_folder() {
    let (root, model) = workspace();
    let config = model.join("config.json");
    refused(&quantize(s(&config), s(&model.join("q")), &[]), root.path(), &["--out", "lies inside the model"]);
}

#[test]
fn out_is_the_input_gguf() {
    let root = tempfile::tempdir().unwrap();
    let gguf = root.path().join("stories.gguf");
    gguf_writer::write_like_llama_cpp(&nash_swarm::load(&stories()).unwrap(), &gguf, "llama");
    refused(&quantize(s(&gguf), s(&gguf), &[]), root.path(), &["--out", "is the model"]);
}

#[test]
fn export_hf_into_the_model_folder() {
    let (root, model) = workspace();
    let out = root.path().join("q");
    refused(&quantize(s(&model), s(&out), &["--export-hf", s(&model)]), root.path(), &["--export-hf", "is the model"]);
}

#[test]
fn out_and_export_hf_name_the_same_folder() {
    let (root, model) = workspace();
    let out = root.path().join("q");
    refused(&quantize(s(&model), s(&out), &["--export-hf", s(&out)]), root.path(), &["--export-hf", "is --out"]);
}

#[test]
fn out_is_the_evaluation_or_calibration_text() {
    let (root, model) = workspace();
    let text = root.path().join("text.txt");
    std::fs::write(&text, "Once upon a time there was a little girl.").unwrap();
    refused(&quantize(s(&model), s(&text), &["--eval-text", s(&text)]), root.path(), &["--out", "the evaluation text"]);
    refused(&quantize(s(&model), s(&text), &["--calib-text", s(&text)]), root.path(), &["--out", "calibration text"]);
}

#[test]
fn out_is_the_configuration_it_reads() {
    let (root, model) = workspace();
    let first = root.path().join("first");
    succeeds(&quantize(s(&model), s(&first), &[]));
    let config = first.join("quantization.toml");
    let args = ["quantize", "--model", s(&model), "--config", s(&config), "--out", s(&first)];
    refused(&args, root.path(), &["--out", "contains the configuration"]);
}

#[test]
fn out_is_an_existing_file() {
    let (root, model) = workspace();
    let file = root.path().join("notes.txt");
    std::fs::write(&file, "my notes").unwrap();
    refused(&quantize(s(&model), s(&file), &[]), root.path(), &["--out", "is an existing file", "folder is expected"]);
}

#[test]
fn out_in_a_missing_folder() {
    let (root, model) = workspace();
    let out = root.path().join("missing/q");
    refused(&quantize(s(&model), s(&out), &[]), root.path(), &["--out", "does not exist"]);
}

#[test]
fn a_foreign_folder_needs_force_and_keeps_its_other_files() {
    let (root, model) = workspace();
    let out = root.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "years of work").unwrap();
    std::fs::write(out.join("config.json"), "{}").unwrap();
    refused(&quantize(s(&model), s(&out), &[]), root.path(), &["--out", "not an earlier export of ours", "--force"]);
    succeeds(&quantize(s(&model), s(&out), &["--force"]));
    assert_eq!(std::fs::read_to_string(out.join("thesis.tex")).unwrap(), "years of work");
    nash_swarm::load(&out).expect("the export loads");
    assert_eq!(leftovers(root.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn an_earlier_export_of_ours_is_replaced_and_nothing_else_in_it() {
    let (root, model) = workspace();
    let out = root.path().join("q");
    succeeds(&quantize(s(&model), s(&out), &[]));
    std::fs::write(out.join("README.md"), "notes about this export").unwrap();
    succeeds(&["quantize", "--model", s(&model), "--preset", "uniform3", "--out", s(&out)]);
    assert!(std::fs::read_to_string(out.join("quantization.toml")).unwrap().contains("bits = 3"));
    assert_eq!(std::fs::read_to_string(out.join("README.md")).unwrap(), "notes about this export");
    // The fp16 export is ours too, and is not mistaken for a packed one when it is opened.
    let hf = root.path().join("hf");
    succeeds(&quantize(s(&model), s(&out), &["--export-hf", s(&hf)]));
    succeeds(&quantize(s(&model), s(&out), &["--export-hf", s(&hf)]));
    assert_eq!(nash_swarm::load(&hf).unwrap().format, nash_swarm::model::SourceFormat::HuggingFace);
    assert_eq!(leftovers(root.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn compare_report_overlapping_or_unwritable_is_refused_before_any_row() {
    let (root, model) = workspace();
    let text = root.path().join("text.txt");
    std::fs::write(&text, std::fs::read_to_string(wikitext()).unwrap().chars().take(20_000).collect::<String>())
        .unwrap();
    let compare = |report: &Path| {
        ["compare", "--model", s(&model), "--text", s(&text), "--ctx", "64", "--report", report.to_str().unwrap()]
            .map(str::to_string)
    };
    let run = |report: &Path, parts: &[&str]| {
        let args = compare(report);
        refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), root.path(), parts)
    };
    let folder = root.path().join("reports");
    std::fs::create_dir(&folder).unwrap();
    run(&folder, &["--report", "is a folder"]);
    run(&text, &["--report", "is the text"]);
    run(&model.join("report.md"), &["--report", "lies inside the model"]);
    run(&root.path().join("missing/report.md"), &["--report", "does not exist"]);
    let foreign = root.path().join("paper.md");
    std::fs::write(&foreign, "# my paper").unwrap();
    run(&foreign, &["--report", "not one of ours", "--force"]);
}
