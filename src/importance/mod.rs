//! Per-weight importance (METHOD.md section 1): one score per weight of every quantizable matrix, laid out like
//! the weight (`[out, in]`, row-major).

pub mod activation;
pub mod magnitude;
pub mod random;
pub mod swarm;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use activation::CalibrationStats;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::model::{Model, tensor_to_vec};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", try_from = "ImportanceFields")]
pub enum ImportanceMethod {
    /// s = |w|
    Magnitude,
    /// s_ij = (1 - alpha)|w_ij| + alpha * mean |w_ik| over the `radius` columns each side of j.
    Swarm { alpha: f32, radius: usize },
    /// s_ij = |w_ij| * sqrt(E[x_j^2]) over calibration tokens (AWQ / imatrix signal).
    Activation,
    /// Uniform random scores: the ablation that shows whether importance matters at all.
    Random { seed: u64 },
}

/// What a configuration may say about importance; each method takes only its own fields (serde's tagged enums
/// ignore extra keys beside a unit variant, which would hide a typo).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportanceFields {
    method: String,
    alpha: Option<f32>,
    radius: Option<usize>,
    seed: Option<u64>,
}

impl TryFrom<ImportanceFields> for ImportanceMethod {
    type Error = String;
    fn try_from(f: ImportanceFields) -> std::result::Result<Self, String> {
        let given = [("alpha", f.alpha.is_some()), ("radius", f.radius.is_some()), ("seed", f.seed.is_some())];
        let allowed: &[&str] = match f.method.as_str() {
            "magnitude" | "activation" => &[],
            "swarm" => &["alpha", "radius"],
            "random" => &["seed"],
            other => return Err(format!("unknown importance method `{other}` (magnitude, swarm, activation, random)")),
        };
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !allowed.contains(key)) {
            return Err(format!("importance method `{}` takes no `{key}`", f.method));
        }
        let missing = |key: &str| format!("importance method `{}` needs `{key}`", f.method);
        Ok(match f.method.as_str() {
            "magnitude" => ImportanceMethod::Magnitude,
            "activation" => ImportanceMethod::Activation,
            "swarm" => ImportanceMethod::Swarm {
                alpha: f.alpha.ok_or_else(|| missing("alpha"))?,
                radius: f.radius.ok_or_else(|| missing("radius"))?,
            },
            _ => ImportanceMethod::Random { seed: f.seed.ok_or_else(|| missing("seed"))? },
        })
    }
}

/// A wider window than any matrix row we open is a typo.
pub const MAX_SWARM_RADIUS: usize = 1 << 16;

impl Default for ImportanceMethod {
    fn default() -> Self {
        ImportanceMethod::Swarm { alpha: 0.5, radius: 8 }
    }
}

impl ImportanceMethod {
    pub fn label(&self) -> String {
        match self {
            ImportanceMethod::Magnitude => "magnitude".into(),
            ImportanceMethod::Swarm { alpha, radius } => format!("swarm(alpha={alpha}, r={radius})"),
            ImportanceMethod::Activation => "activation".into(),
            ImportanceMethod::Random { seed } => format!("random(seed={seed})"),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if let ImportanceMethod::Swarm { alpha, radius } = self {
            if !(0.0..=1.0).contains(alpha) {
                return Err(Error::InvalidArgument(format!("swarm alpha {alpha} must lie in [0, 1]")));
            }
            if *radius > MAX_SWARM_RADIUS {
                return Err(Error::InvalidArgument(format!("swarm radius {radius} is above {MAX_SWARM_RADIUS}")));
            }
        }
        Ok(())
    }
}

/// Importance scores of the quantizable tensors, keyed by weight name.
#[derive(Clone, Debug, Default)]
pub struct Scores(pub BTreeMap<String, Vec<f32>>);

/// Scores for the named tensors. `Activation` needs calibration statistics (see `activation::calibrate`).
pub fn compute(
    model: &Model,
    names: &[String],
    method: &ImportanceMethod,
    calibration: Option<&CalibrationStats>,
    job: &Job,
) -> Result<Scores> {
    check_inputs(method, calibration)?;
    job.report("importance", 0, names.len() as u64, None);
    let scores = names
        .par_iter()
        .map(|name| {
            job.checkpoint()?;
            let tensor = model.weights.get(name)?;
            let (rows, _) = tensor.dims2()?;
            Ok((name.clone(), tensor_scores(method, name, &tensor_to_vec(&tensor)?, rows, calibration)))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    job.report("importance", names.len() as u64, names.len() as u64, None);
    Ok(Scores(scores))
}

/// Scores of one `[rows, cols]` matrix `w`. `Activation` needs `calibration` (checked by `compute`).
pub fn tensor_scores(
    method: &ImportanceMethod,
    name: &str,
    w: &[f32],
    rows: usize,
    calibration: Option<&CalibrationStats>,
) -> Vec<f32> {
    row_scores(method, name, w, 0, w.len() / rows.max(1), calibration)
}

/// Scores of rows `first_row..` of matrix `name` (`w` holds whole rows of `cols` weights): every method scores a
/// weight from its own row, so a large matrix is scored a piece of rows at a time with the scores it has whole.
pub fn row_scores(
    method: &ImportanceMethod,
    name: &str,
    w: &[f32],
    first_row: usize,
    cols: usize,
    calibration: Option<&CalibrationStats>,
) -> Vec<f32> {
    let mut out = crate::memory::zeroed_f32(w.len());
    row_scores_into(method, name, w, first_row, cols, calibration, &mut out);
    out
}

/// `row_scores` into `out` (as long as `w`; every value is written).
pub fn row_scores_into(
    method: &ImportanceMethod,
    name: &str,
    w: &[f32],
    first_row: usize,
    cols: usize,
    calibration: Option<&CalibrationStats>,
    out: &mut [f32],
) {
    assert_eq!(out.len(), w.len(), "one score per weight");
    match method {
        ImportanceMethod::Magnitude => magnitude::scores_into(w, out),
        ImportanceMethod::Swarm { alpha, radius } => swarm::scores_into(w, cols, *alpha, *radius, out),
        // A matrix the calibration never saw as a matmul input (an untied embedding), or whose statistics do not
        // match its columns, falls back to |w|.
        ImportanceMethod::Activation => match calibration.and_then(|c| c.mean_square.get(name)) {
            Some(ms) if ms.len() == cols => activation::scores_into(w, ms, out),
            _ => magnitude::scores_into(w, out),
        },
        ImportanceMethod::Random { seed } => random::scores_into(first_row * cols, *seed, name, out),
    }
}

/// Checks that a method can run with what it is given.
pub fn check_inputs(method: &ImportanceMethod, calibration: Option<&CalibrationStats>) -> Result<()> {
    method.validate()?;
    if matches!(method, ImportanceMethod::Activation) && calibration.is_none() {
        return Err(Error::InvalidArgument("activation importance needs calibration text".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_scores_pieces_of_rows_as_it_scores_the_whole_matrix() {
        let (rows, cols) = (9, 40);
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
        let mean_square: Vec<f32> = (0..cols).map(|j| 1.0 + j as f32 * 0.1).collect();
        let calibration = CalibrationStats {
            mean_square: [("m".to_string(), mean_square)].into_iter().collect(),
            ..Default::default()
        };
        let methods = [
            ImportanceMethod::Magnitude,
            ImportanceMethod::Swarm { alpha: 0.5, radius: 3 },
            ImportanceMethod::Activation,
            ImportanceMethod::Random { seed: 7 },
        ];
        for method in methods {
            let whole = tensor_scores(&method, "m", &w, rows, Some(&calibration));
            let mut pieces = Vec::new();
            for (first, last) in [(0, 4), (4, 5), (5, 9)] {
                pieces.extend(row_scores(&method, "m", &w[first * cols..last * cols], first, cols, Some(&calibration)));
            }
            assert_eq!(pieces, whole, "{method:?}");
        }
    }
}
