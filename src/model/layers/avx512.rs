//! Matrix products in f32 by our own AVX-512 kernel, on CPUs that have AVX-512F: `x @ W^T` (the layers, the head,
//! attention's scores, calibration's `x xᵀ` sums) and `x @ W` (attention's weighted values).
//!
//! Why a kernel of our own beside OpenBLAS: OpenBLAS obeys `OPENBLAS_CORETYPE`, a machine-wide setting that can
//! hold it to AVX2 kernels on an AVX-512 CPU (Haswell's on the reference machine, half the FMA width). This kernel
//! is not OpenBLAS, so that setting does not speak to it; it is used wherever the CPU has AVX-512F.
//!
//! The usual blocked scheme (Goto/BLIS): the depth is cut into blocks of `DEPTH`; for each, a block of `W`'s output
//! columns is packed into panels of `COLS` laid out depth-major (`W`'s rows by 16 x 16 transposes in registers),
//! and a register tile of `ROWS × COLS` outputs (`ROWS` values of `x`, read in place and broadcast, times
//! `COLS / 16` vectors of `W`) is accumulated over the depth block. Zero padding (of `W`'s last panel, of a copy
//! of `x`'s last rows) spares the edges a kernel of their own; a tile that sticks out of the output is written
//! through a scratch tile.

use std::arch::x86_64::*;

use super::gemm::BLayout;
use std::cell::RefCell;

/// Rows of `x` per register tile.
const ROWS: usize = 12;
/// Rows of `W` (output columns) per register tile: two vectors of 16 lanes.
const COLS: usize = 32;
/// Depth per packed block: a `W` panel (`DEPTH × COLS` f32, 32 KiB) stays in L1 while the `x` block streams.
const DEPTH: usize = 256;
/// Rows of `x` per block (96 KiB at full depth: L2).
const X_BLOCK: usize = 8 * ROWS;
/// Rows of `W` per packed block (2 MiB at full depth).
const W_BLOCK: usize = 64 * COLS;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

thread_local! {
    /// Packing buffers reused across calls (fresh memory per product cost page faults): `W`'s panels, and the
    /// zero-padded copy of a last `x` panel that has fewer than `ROWS` rows.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c = a @ op(b)`, or `c += a @ op(b)` when `add`, single-threaded: row-major `a: [m, k]`, `b` holding `op(b)`'s
/// `k × n` values as `layout` says, `c: [m, n]` with row stride `ldc`.
///
/// Panics when the slices are shorter than the shape or the CPU lacks AVX-512F (callers check `available`).
pub fn product(
    a: &[f32],
    b: &[f32],
    layout: BLayout,
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    ldc: usize,
    add: bool,
) {
    assert!(available(), "avx512: a CPU without AVX-512F");
    assert!(a.len() >= m * k && b.len() >= n * k && ldc >= n, "avx512: operands too short");
    assert!(m == 0 || c.len() >= (m - 1) * ldc + n, "avx512: output too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    PACKED.with_borrow_mut(|(packed_w, padded_x)| {
        for j0 in (0..n).step_by(W_BLOCK) {
            let cols = W_BLOCK.min(n - j0);
            for p0 in (0..k).step_by(DEPTH) {
                let depth = DEPTH.min(k - p0);
                pack_w(b, layout, (n, k), j0, cols, p0, depth, packed_w);
                let packed_w = &packed_w[..cols.div_ceil(COLS) * COLS * depth];
                for i0 in (0..m).step_by(X_BLOCK) {
                    let rows = X_BLOCK.min(m - i0);
                    let block = Block { x: &a[i0 * k + p0..], k, rows, cols, depth, accumulate: add || p0 > 0 };
                    // SAFETY: `available()` was checked above: the CPU has AVX-512F.
                    unsafe { multiply_block(&block, packed_w, padded_x, &mut c[i0 * ldc + j0..], ldc) };
                }
            }
        }
    });
}

/// One block's product: `rows × cols` outputs over `depth`, added to the output when `accumulate`. `x` starts at
/// the block's first row and depth, its rows `k` apart.
struct Block<'a> {
    x: &'a [f32],
    k: usize,
    rows: usize,
    cols: usize,
    depth: usize,
    accumulate: bool,
}

/// Packs output columns `first..first + count` of `w` (shape `(n, k)` in `layout`), depth `p0..p0 + depth`, into
/// panels of `COLS` columns each laid out depth-major (`[panel][p][column in panel]`), zero-padding the last panel.
#[allow(clippy::too_many_arguments)]
fn pack_w(
    w: &[f32],
    layout: BLayout,
    (n, k): (usize, usize),
    first: usize,
    count: usize,
    p0: usize,
    depth: usize,
    out: &mut Vec<f32>,
) {
    // Only grown, never cleared: every value is written below, so zeroing it first would be a wasted pass.
    let len = count.div_ceil(COLS) * COLS * depth;
    if out.len() < len {
        out.resize(len, 0.0);
    }
    for (panel, dst) in out[..len].chunks_exact_mut(COLS * depth).enumerate() {
        let cols = COLS.min(count - panel * COLS);
        let first = first + panel * COLS;
        match layout {
            // SAFETY: the caller runs only where the CPU has AVX-512F.
            BLayout::Rows => unsafe { pack_rows(&w[first * k + p0..][..(cols - 1) * k + depth], k, cols, dst) },
            BLayout::Columns => {
                for (p, dst) in dst.chunks_exact_mut(COLS).enumerate() {
                    dst[..cols].copy_from_slice(&w[(p0 + p) * n + first..][..cols]);
                    dst[cols..].fill(0.0);
                }
            }
        }
    }
}

/// One panel from `cols` rows of `w` (`k` apart), transposed: 16 rows by 16 steps of depth at a time in
/// registers, the ragged rest value by value.
#[target_feature(enable = "avx512f")]
fn pack_rows(w: &[f32], k: usize, cols: usize, panel: &mut [f32]) {
    let depth = panel.len() / COLS;
    let whole_depth = depth / 16 * 16;
    for half in 0..COLS / 16 {
        let first = half * 16;
        if first + 16 > cols {
            break;
        }
        for p in (0..whole_depth).step_by(16) {
            let rows: [__m512; 16] = std::array::from_fn(|r| {
                let row = &w[(first + r) * k + p..][..16];
                // SAFETY: `row` holds 16 values.
                unsafe { _mm512_loadu_ps(row.as_ptr()) }
            });
            for (s, column) in transpose_16x16(rows).into_iter().enumerate() {
                let dst = &mut panel[(p + s) * COLS + first..][..16];
                // SAFETY: `dst` holds 16 values.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), column) };
            }
        }
    }
    // What the blocks of 16 left: rows past the last whole 16, and steps past the last whole 16.
    let whole_rows = cols / 16 * 16;
    for p in 0..depth {
        let dst = &mut panel[p * COLS..][..COLS];
        let done = if p < whole_depth { whole_rows } else { 0 };
        for (r, v) in dst.iter_mut().enumerate().take(cols).skip(done) {
            *v = w[r * k + p];
        }
        dst[cols..].fill(0.0);
    }
}

/// The transpose of a 16 × 16 block held as 16 row vectors: unpacks of pairs of 32-bit lanes, then of 64-bit
/// lanes, then two rounds of 128-bit lane shuffles.
#[target_feature(enable = "avx512f")]
fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
    let pairs: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    // quads[4g + j]: from pairs 4g..4g+4; j = 0, 1 from (4g, 4g + 2) low, high; j = 2, 3 from (4g + 1, 4g + 3).
    let quads: [__m512; 16] = std::array::from_fn(|i| {
        let (g, j) = (i / 4, i % 4);
        let (a, b) = (_mm512_castps_pd(pairs[4 * g + j / 2]), _mm512_castps_pd(pairs[4 * g + j / 2 + 2]));
        _mm512_castpd_ps(if j % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    // Within each half of the rows: 128-bit lanes 0, 2 of each pair of quads, then lanes 1, 3.
    let halves: [__m512; 16] = std::array::from_fn(|i| {
        let (h, j) = (i / 8, i % 8);
        let (a, b) = (quads[8 * h + j % 4], quads[8 * h + j % 4 + 4]);
        if j < 4 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    });
    std::array::from_fn(|i| {
        let (a, b) = (halves[i % 8], halves[i % 8 + 8]);
        if i < 8 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    })
}

#[target_feature(enable = "avx512f")]
fn multiply_block(block: &Block, packed_w: &[f32], padded_x: &mut Vec<f32>, c: &mut [f32], ldc: usize) {
    let (depth, k) = (block.depth, block.k);
    for (jp, w_panel) in packed_w.chunks_exact(COLS * depth).enumerate() {
        let cols = COLS.min(block.cols - jp * COLS);
        for i in (0..block.rows).step_by(ROWS) {
            let rows = ROWS.min(block.rows - i);
            let tile = if rows == ROWS {
                tile(depth, &block.x[i * k..], k, w_panel)
            } else {
                // The last rows, padded with zero rows to a whole tile (`x` has no rows past them).
                padded_x.clear();
                padded_x.resize(ROWS * depth, 0.0);
                for (r, dst) in padded_x.chunks_exact_mut(depth).take(rows).enumerate() {
                    dst.copy_from_slice(&block.x[(i + r) * k..][..depth]);
                }
                tile(depth, padded_x, depth, w_panel)
            };
            let corner = i * ldc + jp * COLS;
            for (r, values) in tile.iter().enumerate().take(rows) {
                let out = &mut c[corner + r * ldc..][..cols];
                if block.accumulate {
                    out.iter_mut().zip(values).for_each(|(o, v)| *o += v);
                } else {
                    out.copy_from_slice(&values[..cols]);
                }
            }
        }
    }
}

/// The register tile: `ROWS × COLS` sums over `depth` of `x`'s rows (`stride` apart) times a packed `W` panel.
#[target_feature(enable = "avx512f")]
#[inline]
fn tile(depth: usize, x: &[f32], stride: usize, w_panel: &[f32]) -> [[f32; COLS]; ROWS] {
    assert!(x.len() >= (ROWS - 1) * stride + depth && w_panel.len() == COLS * depth, "avx512::tile: too short");
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    let (x, w) = (x.as_ptr(), w_panel.as_ptr());
    for p in 0..depth {
        // SAFETY: `x` holds `ROWS` rows of `depth` values `stride` apart and the panel `depth` steps (asserted).
        let (w0, w1) = unsafe { (_mm512_loadu_ps(w.add(p * COLS)), _mm512_loadu_ps(w.add(p * COLS + 16))) };
        for (r, sums) in acc.iter_mut().enumerate() {
            let xr = _mm512_set1_ps(unsafe { *x.add(r * stride + p) });
            sums[0] = _mm512_fmadd_ps(xr, w0, sums[0]);
            sums[1] = _mm512_fmadd_ps(xr, w1, sums[1]);
        }
    }
    let mut out = [[0f32; COLS]; ROWS];
    for (row, sums) in out.iter_mut().zip(&acc) {
        // SAFETY: each output row holds two vectors of 16 lanes.
        unsafe {
            _mm512_storeu_ps(row.as_mut_ptr(), sums[0]);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), sums[1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_and_adding_match_f64_loops_on_edges_and_depth_blocks() {
        if !available() {
            eprintln!("no AVX-512F here: the kernel is not used on this CPU");
            return;
        }
        // Edges in every direction, a depth over two blocks, an output with a wider row stride.
        for (m, n, k, ldc) in [(1, 1, 1, 1), (13, 33, 257, 40), (97, 2050, 70, 2050), (24, 64, 600, 64)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0).collect();
            let b: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 197) as f32 / 40.0 - 2.4).collect();
            // `b` as `[n, k]`, and the same matrix transposed as `[k, n]`.
            let b_columns: Vec<f32> = (0..k * n).map(|i| b[(i % n) * k + i / n]).collect();
            let mut c = vec![f32::NAN; (m - 1) * ldc + n];
            let mut c_columns = c.clone();
            product(&a, &b, BLayout::Rows, &mut c, (m, n, k), ldc, false);
            product(&a, &b_columns, BLayout::Columns, &mut c_columns, (m, n, k), ldc, false);
            // And added to what is there.
            let start = |i: usize, j: usize| ((i * 31 + j * 7) % 17) as f32 / 8.0 - 1.0;
            let mut c_added: Vec<f32> = (0..c.len()).map(|e| start(e / ldc, e % ldc)).collect();
            let mut c_columns_added = c_added.clone();
            product(&a, &b, BLayout::Rows, &mut c_added, (m, n, k), ldc, true);
            product(&a, &b_columns, BLayout::Columns, &mut c_columns_added, (m, n, k), ldc, true);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|l| a[i * k + l] as f64 * b[j * k + l] as f64).sum();
                    let added = [c_added[i * ldc + j] - start(i, j), c_columns_added[i * ldc + j] - start(i, j)];
                    for got in [c[i * ldc + j], c_columns[i * ldc + j], added[0], added[1]] {
                        let error = (got as f64 - want).abs();
                        assert!(error < 1e-4 * (1.0 + want.abs()), "({m}, {n}, {k}) at ({i}, {j})");
                    }
                }
            }
        }
    }
}
