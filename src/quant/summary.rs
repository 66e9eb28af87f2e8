//! Per-tensor figures for views: downsampled images of a matrix, and what quantization did to each tensor.

use serde::Serialize;

use super::bits::TensorBits;
use super::stored::QuantizedTensor;

/// A small image of a matrix: mean of each cell of `rows / height` × `cols / width` values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Thumbnail {
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

pub fn thumbnail(values: &[f32], rows: usize, cols: usize, max_side: usize) -> Thumbnail {
    thumbnail_of(|i| values[i], rows, cols, max_side)
}

/// A thumbnail made from pieces of rows, in any order (each cell's sum and count).
#[derive(Clone, Debug)]
pub struct ThumbnailSums {
    rows: usize,
    cols: usize,
    height: usize,
    width: usize,
    sums: Vec<f64>,
    counts: Vec<u32>,
}

impl ThumbnailSums {
    pub fn new(rows: usize, cols: usize, max_side: usize) -> ThumbnailSums {
        let (height, width) = (rows.min(max_side), cols.min(max_side));
        ThumbnailSums { rows, cols, height, width, sums: vec![0.0; height * width], counts: vec![0; height * width] }
    }

    /// Adds the values of rows `first_row..` (whole rows, row-major).
    pub fn add_rows(&mut self, first_row: usize, values: &[f32]) {
        for (r, row) in values.chunks_exact(self.cols.max(1)).enumerate() {
            let cell_row = (first_row + r) * self.height / self.rows;
            for (c, &v) in row.iter().enumerate() {
                let cell = cell_row * self.width + c * self.width / self.cols;
                self.sums[cell] += v as f64;
                self.counts[cell] += 1;
            }
        }
    }

    pub fn finish(self) -> Thumbnail {
        let values = self.sums.iter().zip(&self.counts).map(|(s, n)| (*s / (*n).max(1) as f64) as f32).collect();
        Thumbnail { height: self.height, width: self.width, values }
    }
}

/// A thumbnail of `value(i)` for every row-major index, without materializing the values.
pub fn thumbnail_of(value: impl Fn(usize) -> f32, rows: usize, cols: usize, max_side: usize) -> Thumbnail {
    let (height, width) = (rows.min(max_side), cols.min(max_side));
    let mut sums = vec![0f64; height * width];
    let mut counts = vec![0u32; height * width];
    for r in 0..rows {
        let cell_row = r * height / rows;
        for c in 0..cols {
            let cell = cell_row * width + c * width / cols;
            sums[cell] += value(r * cols + c) as f64;
            counts[cell] += 1;
        }
    }
    let values = sums.iter().zip(&counts).map(|(s, n)| (*s / (*n).max(1) as f64) as f32).collect();
    Thumbnail { height, width, values }
}

/// What quantization did to one tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorResult {
    /// Everything stored for the tensor (payload, block parameters, tier map) per weight.
    pub bits_per_weight: f64,
    /// Share of units in the most important tier.
    pub top_tier_share: f64,
    /// Σ (w − q)² / Σ w².
    pub relative_error: f64,
    /// Bits of each weight's tier, downsampled.
    pub bits_image: Thumbnail,
    pub plan_label: String,
}

pub fn tensor_result(q: &QuantizedTensor, max_side: usize) -> TensorResult {
    let n = q.rows * q.cols;
    let k = q.plan.tiers.len();
    let bits_of = |i: usize| q.plan.tiers[q.tier_of_weight(i)].bits as f32;
    let top = if k == 1 { 1.0 } else { q.tier_counts()[0] as f64 / q.tier_map.units as f64 };
    TensorResult {
        bits_per_weight: TensorBits::of(q).total() as f64 / n as f64,
        top_tier_share: top,
        relative_error: if q.squared_norm > 0.0 { q.squared_error / q.squared_norm } else { 0.0 },
        bits_image: thumbnail_of(bits_of, q.rows, q.cols, max_side),
        plan_label: q.plan.label(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thumbnails_average_their_cells() {
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let t = super::thumbnail(&values, 4, 4, 2);
        assert_eq!((t.height, t.width), (2, 2));
        assert_eq!(t.values, vec![2.5, 4.5, 10.5, 12.5]);
        // The same from pieces of rows, in any order.
        let mut sums = super::ThumbnailSums::new(4, 4, 2);
        sums.add_rows(3, &values[12..]);
        sums.add_rows(0, &values[..12]);
        assert_eq!(sums.finish().values, t.values);
    }
}
