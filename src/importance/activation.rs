//! Activation-aware importance: s_ij = |w_ij| · sqrt(E[x_j²]), where E[x_j²] is the mean square of input
//! feature j of that matrix over calibration tokens, gathered by observing every matmul of the forward pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Result;
use crate::job::Job;
use crate::model::Model;

/// Mean square of every input feature of every matrix, over the calibration tokens.
#[derive(Clone, Debug, Default)]
pub struct CalibrationStats {
    pub mean_square: BTreeMap<String, Vec<f32>>,
    /// E[x xᵀ] of every matrix's inputs (`cols × cols`, row-major), when asked for (GPTQ); matrices that read the
    /// same input (q, k and v; gate and up) share one.
    pub second_moment: BTreeMap<String, Arc<Vec<f32>>>,
    pub tokens: usize,
}

impl CalibrationStats {
    /// E[x²] of the `cols` inputs of matrix `name`, when it was observed with that many columns.
    pub fn column_weights(&self, name: &str, cols: usize) -> Option<&[f32]> {
        self.mean_square.get(name).filter(|m| m.len() == cols).map(Vec::as_slice)
    }

    /// E[x xᵀ] of the `cols` inputs of matrix `name`, when it was gathered with that many columns.
    pub fn second_moment(&self, name: &str, cols: usize) -> Option<&[f32]> {
        self.second_moment.get(name).filter(|m| Some(m.len()) == cols.checked_mul(cols)).map(|m| m.as_slice())
    }
}

/// Runs the model over the calibration windows and records E[x_j²] for each matrix's input, and E[x xᵀ] too
/// with `second_moments` (GPTQ's Hessians: `cols²` floats per matrix).
pub fn calibrate(model: &Model, windows: &[Vec<u32>], second_moments: bool, job: &Job) -> Result<CalibrationStats> {
    let mut sums: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
    let mut products: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    // Matrices that read the same input (q, k and v; gate and up) share one xᵀx, summed under the first one's name.
    let mut sharing: BTreeMap<String, String> = BTreeMap::new();
    for (i, window) in windows.iter().enumerate() {
        job.checkpoint()?;
        // The input seen last, and the matrix that first read it.
        let mut last: Option<(candle_core::TensorId, String)> = None;
        let mut observe = |name: &str, x: &candle_core::Tensor| -> Result<()> {
            let rows = x.dims()[0];
            let square_sums = x.sqr()?.sum(0)?.to_vec1::<f32>()?;
            let entry = sums.entry(name.to_string()).or_insert_with(|| (vec![0.0; square_sums.len()], 0));
            entry.0.iter_mut().zip(&square_sums).for_each(|(acc, v)| *acc += *v as f64);
            entry.1 += rows;
            if second_moments {
                if let Some((_, first)) = last.as_ref().filter(|(id, _)| *id == x.id()) {
                    sharing.insert(name.to_string(), first.clone());
                    return Ok(());
                }
                let xt = x.t()?.contiguous()?;
                let product = crate::model::layers::gemm::matmul_t(&xt, &xt)?.flatten_all()?.to_vec1::<f32>()?;
                let acc = products.entry(name.to_string()).or_insert_with(|| vec![0.0; product.len()]);
                acc.iter_mut().zip(&product).for_each(|(a, p)| *a += p);
                last = Some((x.id(), name.to_string()));
            }
            Ok(())
        };
        model.observe(window, &mut observe)?;
        job.report("calibration", i as u64 + 1, windows.len() as u64, None);
    }
    let tokens: usize = windows.iter().map(Vec::len).sum();
    let mean_square =
        sums.into_iter().map(|(k, (s, n))| (k, s.iter().map(|v| (v / n as f64) as f32).collect())).collect();
    let per_token = 1.0 / tokens.max(1) as f32;
    let mut second_moment: BTreeMap<String, Arc<Vec<f32>>> = products
        .into_iter()
        .map(|(k, mut p)| {
            p.iter_mut().for_each(|v| *v *= per_token);
            (k, Arc::new(p))
        })
        .collect();
    for (name, first) in sharing {
        if let (false, Some(shared)) = (second_moment.contains_key(&name), second_moment.get(&first).cloned()) {
            second_moment.insert(name, shared);
        }
    }
    Ok(CalibrationStats { mean_square, second_moment, tokens })
}

pub fn scores_into(w: &[f32], mean_square: &[f32], out: &mut [f32]) {
    let scale: Vec<f32> = mean_square.iter().map(|m| m.sqrt()).collect();
    for (row, out) in w.chunks_exact(scale.len()).zip(out.chunks_exact_mut(scale.len())) {
        out.iter_mut().zip(row).zip(&scale).for_each(|((o, v), s)| *o = v.abs() * s);
    }
}
