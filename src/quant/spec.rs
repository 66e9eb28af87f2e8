//! What a plan says about one matrix: its tiers, where tiers and grids are decided, the block size and the grid.

use serde::{Deserialize, Serialize};

use super::tiers::{Granularity, Tier};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Grid {
    #[default]
    Asymmetric,
    Symmetric,
}

impl Grid {
    /// f16 values stored per block.
    pub fn params_per_block(self) -> usize {
        match self {
            Grid::Asymmetric => 2,
            Grid::Symmetric => 1,
        }
    }
}

/// Weights per quantization block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GroupSize {
    G(usize),
    Row,
    /// One block for the whole matrix (the original's "uniform 4-bit per tensor").
    Tensor,
}

impl From<GroupSize> for String {
    fn from(g: GroupSize) -> String {
        match g {
            GroupSize::G(g) => g.to_string(),
            GroupSize::Row => "row".into(),
            GroupSize::Tensor => "tensor".into(),
        }
    }
}

impl TryFrom<String> for GroupSize {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "32" => Ok(GroupSize::G(32)),
            "64" => Ok(GroupSize::G(64)),
            "128" => Ok(GroupSize::G(128)),
            "256" => Ok(GroupSize::G(256)),
            "row" => Ok(GroupSize::Row),
            "tensor" => Ok(GroupSize::Tensor),
            other => Err(format!("group size `{other}` is not one of 32, 64, 128, 256, row, tensor")),
        }
    }
}

impl GroupSize {
    /// Contiguous (start, len) ranges of the row-major weights, in storage order.
    pub fn blocks(self, rows: usize, cols: usize) -> Vec<(usize, usize)> {
        self.blocks_in(0..rows, cols)
    }

    /// The blocks of rows `rows` (the whole-tensor block only when `rows` starts at 0), as (start, length) in
    /// row-major weight order.
    pub fn blocks_in(self, rows: std::ops::Range<usize>, cols: usize) -> Vec<(usize, usize)> {
        match self {
            GroupSize::Tensor if rows.is_empty() || rows.start > 0 => vec![],
            GroupSize::Tensor => vec![(0, rows.end * cols)],
            GroupSize::Row => rows.map(|r| (r * cols, cols)).collect(),
            GroupSize::G(g) => {
                rows.flat_map(|r| (0..cols).step_by(g).map(move |c| (r * cols + c, g.min(cols - c)))).collect()
            }
        }
    }
}

/// How each block's grid is chosen (`quant::method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QuantizerKind {
    /// Min-max grid, round to nearest: the original's quantizer and the baseline.
    #[default]
    Rtn,
    /// Scale (and min) by importance-weighted least squares, round to nearest.
    LeastSquares,
    /// GPTQ: columns quantized in order, each one's error spread over the columns not yet quantized through the
    /// inverse of the input Hessian E[x xᵀ]; grids by least squares. Single-tier plans with a Hessian only
    /// (others fall back to least squares).
    Gptq,
}

impl QuantizerKind {
    pub const ALL: [QuantizerKind; 3] = [QuantizerKind::Rtn, QuantizerKind::LeastSquares, QuantizerKind::Gptq];

    pub fn is_rtn(&self) -> bool {
        *self == QuantizerKind::Rtn
    }

    /// Short name for labels and flags.
    pub fn label(self) -> &'static str {
        match self {
            QuantizerKind::Rtn => "rtn",
            QuantizerKind::LeastSquares => "ls",
            QuantizerKind::Gptq => "gptq",
        }
    }

    /// Whether the quantizer weighs columns by calibration statistics when it has them.
    pub fn uses_calibration(self) -> bool {
        self != QuantizerKind::Rtn
    }
}

impl std::str::FromStr for QuantizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rtn" => Ok(QuantizerKind::Rtn),
            "ls" | "least-squares" => Ok(QuantizerKind::LeastSquares),
            "gptq" => Ok(QuantizerKind::Gptq),
            other => Err(format!("quantizer `{other}` is not one of rtn, ls (least-squares), gptq")),
        }
    }
}

/// How one matrix is quantized: its tiers, where tiers and grids are decided, and how grids are chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorPlan {
    pub tiers: Vec<Tier>,
    pub granularity: Granularity,
    pub group_size: GroupSize,
    pub grid: Grid,
    /// Written only when not RTN, so configurations and files from before it read and write the same.
    #[serde(default, skip_serializing_if = "QuantizerKind::is_rtn")]
    pub quantizer: QuantizerKind,
}

impl TensorPlan {
    pub fn uniform(bits: u8, group_size: GroupSize, grid: Grid) -> Self {
        TensorPlan {
            tiers: vec![Tier { share: 1.0, bits }],
            granularity: Granularity::Tensor,
            group_size,
            grid,
            quantizer: QuantizerKind::Rtn,
        }
    }

    pub fn with_quantizer(self, quantizer: QuantizerKind) -> Self {
        TensorPlan { quantizer, ..self }
    }

    pub fn label(&self) -> String {
        let tiers: Vec<String> = self.tiers.iter().map(|t| format!("{:.0}%->{}", t.share * 100.0, t.bits)).collect();
        let g = String::from(self.group_size);
        let quantizer = if self.quantizer.is_rtn() { String::new() } else { format!(" {}", self.quantizer.label()) };
        if self.tiers.len() == 1 {
            format!("{}b g{g}{quantizer}", self.tiers[0].bits)
        } else {
            format!("{} {} g{g}{quantizer}", tiers.join("/"), self.granularity)
        }
    }
}
