//! The quantization configuration: everything needed to reproduce a quantized model, saved as
//! `quantization.toml` next to it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::spec::{Grid, GroupSize, QuantizerKind, TensorPlan};
use super::tiers::{Granularity, Tier, validate_tiers};
use crate::error::{Error, Result};
use crate::importance::ImportanceMethod;
use crate::model::TensorRole;

/// Where tier thresholds are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    #[default]
    PerTensor,
    Global,
}

/// Which kinds of matrices follow the tiers; the others are kept at `keep_bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    pub attention: bool,
    pub mlp: bool,
    pub embedding: bool,
    pub lm_head: bool,
}

impl Roles {
    pub const BLOCKS: Roles = Roles { attention: true, mlp: true, embedding: false, lm_head: false };
    pub const ALL: Roles = Roles { attention: true, mlp: true, embedding: true, lm_head: true };

    pub fn includes(&self, role: TensorRole) -> bool {
        match role {
            TensorRole::Attention => self.attention,
            TensorRole::Mlp => self.mlp,
            TensorRole::Embedding => self.embedding,
            TensorRole::LmHead => self.lm_head,
            TensorRole::Other => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    pub windows: usize,
    pub tokens: usize,
}

pub const MAX_CALIBRATION_WINDOWS: usize = 100_000;
pub const MAX_CALIBRATION_TOKENS: usize = 1 << 20;

/// `line L, column C: message` instead of toml's multi-line excerpt of the input.
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else { return message.to_string() };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

impl Default for CalibrationSpec {
    fn default() -> Self {
        CalibrationSpec { windows: 64, tokens: 128 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantConfig {
    pub importance: ImportanceMethod,
    /// Most important first.
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub scope: Scope,
    pub granularity: Granularity,
    pub group_size: GroupSize,
    #[serde(default)]
    pub grid: Grid,
    /// How block grids are chosen (written only when not RTN).
    #[serde(default, skip_serializing_if = "QuantizerKind::is_rtn")]
    pub quantizer: QuantizerKind,
    pub quantize: Roles,
    /// Bits of 2-D matrices outside `quantize`, uniform at `group_size` (16 = fp16). Norms and biases: fp16.
    pub keep_bits: u8,
    #[serde(default)]
    pub calibration: CalibrationSpec,
    /// Per-tensor plans that replace the tiers (a Nash allocation writes these).
    #[serde(default)]
    pub overrides: BTreeMap<String, TensorPlan>,
}

impl QuantConfig {
    /// The original Nash-Swarm configuration: swarm importance, per-tensor quantiles 90/70 -> 8/4/2 bits per
    /// weight, g = 128, every 2-D matrix including embeddings and LM head. Payload 3.0 bpw.
    pub fn seed() -> Self {
        QuantConfig {
            importance: ImportanceMethod::Swarm { alpha: 0.5, radius: 8 },
            tiers: vec![Tier { share: 0.1, bits: 8 }, Tier { share: 0.2, bits: 4 }, Tier { share: 0.7, bits: 2 }],
            scope: Scope::PerTensor,
            granularity: Granularity::Weight,
            group_size: GroupSize::G(128),
            grid: Grid::Asymmetric,
            quantizer: QuantizerKind::Rtn,
            quantize: Roles::ALL,
            keep_bits: 16,
            calibration: CalibrationSpec::default(),
            overrides: BTreeMap::new(),
        }
    }

    /// Uniform RTN of attention and MLP matrices; embeddings and LM head kept at 8 bits with the same groups.
    pub fn uniform(bits: u8, group_size: GroupSize) -> Self {
        QuantConfig {
            importance: ImportanceMethod::Magnitude,
            tiers: vec![Tier { share: 1.0, bits }],
            granularity: Granularity::Tensor,
            group_size,
            quantize: Roles::BLOCKS,
            keep_bits: 8,
            ..Self::seed()
        }
    }

    /// The original's baseline: one 4-bit min-max grid per matrix, every 2-D matrix.
    pub fn uniform4_per_tensor() -> Self {
        QuantConfig { quantize: Roles::ALL, keep_bits: 16, ..Self::uniform(4, GroupSize::Tensor) }
    }

    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "seed" => Ok(Self::seed()),
            "uniform4" => Ok(Self::uniform(4, GroupSize::G(128))),
            "uniform3" => Ok(Self::uniform(3, GroupSize::G(128))),
            "uniform4-tensor" => Ok(Self::uniform4_per_tensor()),
            other => Err(Error::InvalidArgument(format!(
                "unknown preset `{other}` (seed, uniform4, uniform3, uniform4-tensor)"
            ))),
        }
    }

    pub fn tier_plan(&self) -> TensorPlan {
        TensorPlan {
            tiers: self.tiers.clone(),
            granularity: self.granularity,
            group_size: self.group_size,
            grid: self.grid,
            quantizer: self.quantizer,
        }
    }

    pub fn validate(&self) -> Result<()> {
        validate_tiers(&self.tiers)?;
        self.importance.validate()?;
        if !super::tiers::ALLOWED_BITS.contains(&self.keep_bits) {
            return Err(Error::InvalidArgument(format!(
                "keep_bits {} is not one of 2, 3, 4, 5, 6, 8, 16",
                self.keep_bits
            )));
        }
        if self.granularity == Granularity::Tensor && self.tiers.len() > 1 && self.scope == Scope::PerTensor {
            return Err(Error::InvalidArgument(
                "tensor granularity with several tiers needs global scope (one tier per matrix across the model)"
                    .into(),
            ));
        }
        for (name, plan) in &self.overrides {
            validate_tiers(&plan.tiers).map_err(|e| Error::InvalidArgument(format!("override for {name}: {e}")))?;
        }
        let CalibrationSpec { windows, tokens } = self.calibration;
        if !(1..=MAX_CALIBRATION_WINDOWS).contains(&windows) || !(2..=MAX_CALIBRATION_TOKENS).contains(&tokens) {
            return Err(Error::InvalidArgument(format!(
                "calibration of {windows} windows of {tokens} tokens: windows must be 1 to \
                 {MAX_CALIBRATION_WINDOWS}, tokens 2 to {MAX_CALIBRATION_TOKENS}"
            )));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serializes to TOML")
    }

    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        let config: QuantConfig = toml::from_str(text).map_err(|e| one_line_toml_error(text, &e))?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Reads `quantization.toml` (or `.json`), naming the file in every error.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            String::from_utf8(crate::error::read_file(path)?).map_err(|_| Error::bad_file(path, "not UTF-8 text"))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<QuantConfig>(&text).map_err(|e| e.to_string()).and_then(|c| {
                c.validate().map_err(|e| e.to_string())?;
                Ok(c)
            })
        } else {
            Self::from_toml(&text)
        };
        parsed.map_err(|e| Error::bad_file(path, format!("invalid quantization configuration: {e}")))
    }

    /// One line for tables: tiers, granularity, groups.
    pub fn summary(&self) -> String {
        let mut s = self.tier_plan().label();
        if self.tiers.len() > 1 {
            s = format!(
                "{s} {} {}",
                self.importance.label(),
                if self.scope == Scope::Global { "global" } else { "per-tensor" }
            );
        }
        if !self.overrides.is_empty() {
            s = format!("{} per-tensor plans", self.overrides.len());
        }
        s
    }
}
