//! What the explorer remembers between runs (eframe persistence): recent files and the last settings.

use std::path::PathBuf;

use nash_swarm::quant::QuantConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    MeanImportance,
    TopTierShare,
    AssignedBits,
    QuantError,
    /// The measured ΔKLD per unit of weight error (the Nash allocation's measurement).
    Sensitivity,
    /// The predicted ΔKLD of each tensor at its allocated strategy.
    PredictedKld,
    /// Bits per weight of one run minus another's (two runs marked in the table).
    BitsDifference,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::MeanImportance,
        Metric::TopTierShare,
        Metric::AssignedBits,
        Metric::QuantError,
        Metric::Sensitivity,
        Metric::PredictedKld,
        Metric::BitsDifference,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::MeanImportance => "mean importance",
            Metric::TopTierShare => "share in top tier",
            Metric::AssignedBits => "assigned bits",
            Metric::QuantError => "quantization error",
            Metric::Sensitivity => "sensitivity",
            Metric::PredictedKld => "predicted ΔKLD",
            Metric::BitsDifference => "bits, run vs run",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub recent_models: Vec<PathBuf>,
    pub text: Option<PathBuf>,
    pub config: QuantConfig,
    pub ctx: usize,
    pub eval_windows: usize,
    pub target_bpw: f64,
    pub metric: Metric,
    /// The model the configuration's per-tensor plans (an allocation) were made for: they name its tensors and
    /// are priced by its weights, so they are not carried over to another model, nor to another file at the
    /// same path.
    pub overrides_made_for: Option<ModelIdentity>,
    /// The user's configuration before Allocate replaced it: "undo" brings it back.
    pub before_allocation: Option<QuantConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recent_models: Vec::new(),
            text: None,
            config: QuantConfig::seed(),
            ctx: 512,
            eval_windows: 4,
            target_bpw: 4.5,
            metric: Metric::MeanImportance,
            overrides_made_for: None,
            before_allocation: None,
        }
    }
}

impl Settings {
    /// Ends an allocation: the configuration from before it when there is one, else the same without its
    /// per-tensor plans.
    pub fn undo_allocation(&mut self) {
        match self.before_allocation.take() {
            Some(before) => self.config = before,
            None => self.config.overrides.clear(),
        }
        self.overrides_made_for = None;
    }

    pub fn remember_model(&mut self, path: PathBuf) {
        self.recent_models.retain(|p| *p != path);
        self.recent_models.insert(0, path);
        self.recent_models.truncate(8);
    }
}

/// Which model this is: where it was opened from, and a digest of its weight files (their sizes and their first
/// and last MiB), so a file replaced at the same path is another model and a moved one the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub path: PathBuf,
    pub digest: String,
}

impl ModelIdentity {
    pub fn of(source: &std::path::Path) -> std::io::Result<ModelIdentity> {
        use sha2::{Digest, Sha256};
        use std::io::{Read, Seek, SeekFrom};
        const SAMPLE: u64 = 1 << 20;
        let root = nash_swarm::formats::model_root(source);
        let mut files: Vec<PathBuf> = if root.is_dir() {
            std::fs::read_dir(&root)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors" || x == "gguf" || x == "json"))
                .collect()
        } else {
            vec![root.clone()]
        };
        files.sort();
        let mut hash = Sha256::new();
        for file in files {
            let mut f = std::fs::File::open(&file)?;
            let size = f.metadata()?.len();
            hash.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            hash.update(size.to_le_bytes());
            let mut sample = Vec::new();
            (&mut f).take(SAMPLE).read_to_end(&mut sample)?;
            if size > 2 * SAMPLE {
                f.seek(SeekFrom::End(-(SAMPLE as i64)))?;
                f.take(SAMPLE).read_to_end(&mut sample)?;
            } else {
                f.read_to_end(&mut sample)?;
            }
            hash.update(&sample);
        }
        let digest = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        Ok(ModelIdentity { path: source.to_path_buf(), digest })
    }
}
