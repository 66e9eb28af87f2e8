//! Activation-aware importance: s_ij = |w_ij| · sqrt(E[x_j²]), where E[x_j²] is the mean square of input
//! feature j of that matrix over calibration tokens, gathered by observing every matmul of the forward pass.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::memory::SharedBytes;
use crate::model::Model;

/// Mean square of every input feature of every matrix, over the calibration tokens.
#[derive(Clone, Default)]
pub struct CalibrationStats {
    pub mean_square: BTreeMap<String, Vec<f32>>,
    /// E[x xᵀ] of every matrix's inputs, when asked for (GPTQ); matrices that read the same input (q, k and v;
    /// gate and up) share one.
    pub second_moment: BTreeMap<String, SecondMoment>,
    pub tokens: usize,
}

impl std::fmt::Debug for CalibrationStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let moments = self.second_moment.len();
        write!(
            f,
            "CalibrationStats({} inputs, {moments} second moments, {} tokens)",
            self.mean_square.len(),
            self.tokens
        )
    }
}

impl CalibrationStats {
    /// E[x²] of the `cols` inputs of matrix `name`, when it was observed with that many columns.
    pub fn column_weights(&self, name: &str, cols: usize) -> Option<&[f32]> {
        self.mean_square.get(name).filter(|m| m.len() == cols).map(Vec::as_slice)
    }

    /// E[x xᵀ] of the `cols` inputs of matrix `name`, when it was gathered with that many columns.
    pub fn second_moment(&self, name: &str, cols: usize) -> Option<&[f32]> {
        self.second_moment.get(name).map(SecondMoment::values).filter(|m| Some(m.len()) == cols.checked_mul(cols))
    }
}

/// One input's E[x xᵀ] (`cols × cols` f32, row-major) in a scratch file that calibration wrote a layer at a time
/// and maps: an 8B model's moments are about 33 GB, which need not fit in memory (the kernel pages them in as a
/// quantizer reads them and may evict them after).
#[derive(Clone)]
pub struct SecondMoment {
    file: SharedBytes,
    range: Range<usize>,
}

impl SecondMoment {
    pub fn values(&self) -> &[f32] {
        // The mapping is page-aligned and every moment starts after whole f32s, so the cast cannot fail.
        bytemuck::cast_slice(&self.file[self.range.clone()])
    }
}

/// Runs the model over the calibration windows and records E[x_j²] for each matrix's input, and E[x xᵀ] too
/// with `second_moments` (GPTQ's Hessians: `cols²` floats per input). The windows go through the model together a
/// layer at a time, so each layer's weights are decoded once and only one layer's moments are summed in memory:
/// when a layer is done they go to a scratch file.
pub fn calibrate(model: &Model, windows: &[Vec<u32>], second_moments: bool, job: &Job) -> Result<CalibrationStats> {
    let tokens: usize = windows.iter().map(Vec::len).sum();
    let gathering = RefCell::new(Gathering::new(second_moments.then(MomentFile::new).transpose()?, tokens));
    let mut observe = |name: &str, x: &candle_core::Tensor| gathering.borrow_mut().observe(name, x);
    let layers = model.architecture.num_layers() as u64;
    let mut after_layer = |done: usize| {
        gathering.borrow_mut().finish_layer()?;
        job.report("calibration", done as u64, layers, None);
        job.checkpoint()
    };
    job.checkpoint()?;
    let windows: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
    model.observe(&windows, &mut observe, &mut after_layer)?;
    gathering.into_inner().finish()
}

/// What calibration has summed so far.
struct Gathering {
    /// Σ x_j² per matrix, and the rows summed.
    sums: BTreeMap<String, (Vec<f64>, usize)>,
    /// The current layer's Σ x xᵀ, under the name of the first matrix that read each input.
    open: BTreeMap<String, Vec<f32>>,
    /// Matrices that read an input another one read first, and that one's name.
    sharing: BTreeMap<String, String>,
    /// The input seen last, the matrix that first read it, and its Σ x_j² (q, k and v read one input).
    last: Option<(candle_core::TensorId, String, Vec<f32>)>,
    /// Where finished layers' moments go; None without second moments.
    moments: Option<MomentFile>,
    tokens: usize,
}

impl Gathering {
    fn new(moments: Option<MomentFile>, tokens: usize) -> Self {
        Gathering {
            sums: BTreeMap::new(),
            open: BTreeMap::new(),
            sharing: BTreeMap::new(),
            last: None,
            moments,
            tokens,
        }
    }

    /// Adds a window's inputs `x` (`[tokens, cols]`) of matrix `name`. Plain loops rather than candle's ops: those
    /// wake candle's own worker thread, whose spinning took a core from the forward pass.
    fn observe(&mut self, name: &str, x: &candle_core::Tensor) -> Result<()> {
        let (rows, cols) = x.dims2()?;
        // The id of the tensor the model passed: matrices that read one input are told apart by it.
        let id = x.id();
        crate::model::tensor_io::with_f32_slice(&x.contiguous()?, |values| self.add(name, id, values, rows, cols))?
    }

    fn add(&mut self, name: &str, id: candle_core::TensorId, x: &[f32], rows: usize, cols: usize) -> Result<()> {
        let shared = self.last.as_ref().filter(|(last, ..)| *last == id).map(|(_, first, squares)| (first, squares));
        let square_sums = match shared {
            Some((_, squares)) => squares.clone(),
            None => square_sums(x, cols),
        };
        let entry = self.sums.entry(name.to_string()).or_insert_with(|| (vec![0.0; cols], 0));
        entry.0.iter_mut().zip(&square_sums).for_each(|(acc, v)| *acc += *v as f64);
        entry.1 += rows;
        if let Some((first, _)) = shared {
            if self.moments.is_some() {
                self.sharing.insert(name.to_string(), first.clone());
            }
            return Ok(());
        }
        if self.moments.is_some() {
            let mut xt = vec![0f32; rows * cols];
            xt.par_chunks_mut(rows.max(1)).with_min_len(64).enumerate().for_each(|(j, column)| {
                column.iter_mut().enumerate().for_each(|(t, v)| *v = x[t * cols + j]);
            });
            let sums = self.open.entry(name.to_string()).or_insert_with(|| crate::memory::zeroed_f32(cols * cols));
            crate::model::layers::gemm::add_gram_lower(&xt, cols, rows, sums)?;
        }
        self.last = Some((id, name.to_string(), square_sums));
        Ok(())
    }

    /// The moments summed so far are complete (a layer, or the head's input at the end): to the file.
    fn finish_layer(&mut self) -> Result<()> {
        let Some(file) = self.moments.as_mut() else { return Ok(()) };
        let per_token = 1.0 / self.tokens.max(1) as f32;
        for (name, mut sum) in std::mem::take(&mut self.open) {
            let cols = (sum.len() as f64).sqrt().round() as usize;
            crate::model::layers::gemm::mirror_lower(&mut sum, cols);
            sum.iter_mut().for_each(|v| *v *= per_token);
            file.append(name, &sum)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<CalibrationStats> {
        self.finish_layer()?;
        let mean_square =
            (self.sums.into_iter()).map(|(k, (s, n))| (k, s.iter().map(|v| (v / n as f64) as f32).collect())).collect();
        let mut second_moment = match self.moments {
            Some(file) => file.map()?,
            None => BTreeMap::new(),
        };
        for (name, first) in self.sharing {
            if let (false, Some(shared)) = (second_moment.contains_key(&name), second_moment.get(&first).cloned()) {
                second_moment.insert(name, shared);
            }
        }
        Ok(CalibrationStats { mean_square, second_moment, tokens: self.tokens })
    }
}

/// Σ_t x_tj² of the row-major `x` (`[tokens, cols]`).
fn square_sums(x: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0f32; cols];
    for row in x.chunks_exact(cols) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v * v);
    }
    sums
}

/// An unnamed scratch file in the temporary folder (`TMPDIR`), removed when closed, that moments are appended to.
struct MomentFile {
    writer: std::io::BufWriter<std::fs::File>,
    ranges: BTreeMap<String, Range<usize>>,
    len: usize,
}

impl MomentFile {
    fn new() -> Result<Self> {
        let file = tempfile::tempfile().map_err(|e| scratch_error("creating", e))?;
        Ok(MomentFile { writer: std::io::BufWriter::with_capacity(1 << 20, file), ranges: BTreeMap::new(), len: 0 })
    }

    fn append(&mut self, name: String, values: &[f32]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        self.writer.write_all(bytes).map_err(|e| scratch_error("writing", e))?;
        self.ranges.insert(name, self.len..self.len + bytes.len());
        self.len += bytes.len();
        Ok(())
    }

    fn map(self) -> Result<BTreeMap<String, SecondMoment>> {
        if self.ranges.is_empty() {
            return Ok(BTreeMap::new());
        }
        let file = self.writer.into_inner().map_err(|e| scratch_error("writing", e.into_error()))?;
        // SAFETY: the file is unnamed and ours alone; nothing else can change it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| scratch_error("mapping", e))?;
        let file: SharedBytes = std::sync::Arc::new(map);
        Ok(self.ranges.into_iter().map(|(name, range)| (name, SecondMoment { file: file.clone(), range })).collect())
    }
}

fn scratch_error(doing: &str, source: std::io::Error) -> Error {
    Error::scratch(&format!("{doing} calibration's scratch file of second moments"), source)
}

pub fn scores_into(w: &[f32], mean_square: &[f32], out: &mut [f32]) {
    let scale: Vec<f32> = mean_square.iter().map(|m| m.sqrt()).collect();
    for (row, out) in w.chunks_exact(scale.len()).zip(out.chunks_exact_mut(scale.len())) {
        out.iter_mut().zip(row).zip(&scale).for_each(|((o, v), s)| *o = v.abs() * s);
    }
}
