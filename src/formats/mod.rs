//! File formats, one file each: Hugging Face folders (safetensors), GGUF, our packed export and the fp16 export.
//! `load` opens whatever a path names; readers share `checks`; writers go through `crate::output`.

pub mod checks;
pub mod gguf;
pub mod hf;
pub mod hf_fp16;
pub mod packed;
pub mod safetensors;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::Model;

pub use hf::load_tokenizer;

/// Loads a model from a Hugging Face folder (or a file inside one), a `.gguf` file, or a packed export folder.
pub fn load(path: &Path) -> Result<Model> {
    if !path.exists() {
        return Err(Error::bad_file(path, "no such file or directory"));
    }
    if path.is_file() {
        if is_gguf(path)? {
            return gguf::load(path);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".safetensors") || name == "config.json" {
            return load(path.parent().unwrap_or(Path::new(".")));
        }
        return Err(Error::bad_file(path, "neither a GGUF file nor a Hugging Face model folder"));
    }
    if packed::is_packed_dir(path) {
        return packed::load(path);
    }
    hf::load(path)
}

/// The file or folder that opening `path` reads: the folder when `path` names a file inside a Hugging Face
/// folder, else `path` itself. Outputs must stay clear of it.
pub fn model_root(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let inside_hf_folder = name.ends_with(".safetensors") || name == "config.json";
    if path.is_file() && inside_hf_folder && !is_gguf(path).unwrap_or(false) {
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    }
}

fn is_gguf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(n == 4 && &magic == b"GGUF" || path.extension().is_some_and(|e| e == "gguf"))
}
