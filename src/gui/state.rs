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
    /// are priced by its weights, so they are not carried over to another model.
    pub overrides_model: Option<PathBuf>,
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
            overrides_model: None,
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
        self.overrides_model = None;
    }

    pub fn remember_model(&mut self, path: PathBuf) {
        self.recent_models.retain(|p| *p != path);
        self.recent_models.insert(0, path);
        self.recent_models.truncate(8);
    }
}
