//! GPTQ's update factor by OpenBLAS: the inverse of the lower Cholesky factor of a symmetric matrix, in place.
//!
//! OpenBLAS runs one thread per call here (rayon splits our work), so one LAPACK call would leave the other core
//! idle for the whole factor: at 8192 columns that was a fifth of a Llama-3.2-1B GPTQ run. Large matrices are
//! therefore factored in blocks of columns, LAPACK's own blocked algorithms (right-looking `dpotrf`, `dtrtri`
//! from the last block), with each block's large products (`dtrsm`, `dgemm`, `dtrmm`) cut into independent
//! parts run on threads of their own: the thread that makes a factor is a rayon worker, and the others may be
//! waiting for that very factor, so rayon's own threads could not take the parts.

use std::ffi::{c_char, c_int};
use std::ops::Range;

use super::gemm::{CBLAS_NO_TRANS as NO_TRANS, CBLAS_ROW_MAJOR as ROW_MAJOR, CBLAS_TRANS as TRANS, GemmFn};

type PotrfFn = unsafe extern "C" fn(layout: c_int, uplo: c_char, n: c_int, a: *mut f64, lda: c_int) -> c_int;
type TrtriFn =
    unsafe extern "C" fn(layout: c_int, uplo: c_char, diag: c_char, n: c_int, a: *mut f64, lda: c_int) -> c_int;
type DgemmFn = GemmFn<f64>;
/// `cblas_dtrsm` and `cblas_dtrmm` share this signature.
type TriangularFn = unsafe extern "C" fn(
    layout: c_int,
    side: c_int,
    uplo: c_int,
    trans_a: c_int,
    diag: c_int,
    m: c_int,
    n: c_int,
    alpha: f64,
    a: *const f64,
    lda: c_int,
    b: *mut f64,
    ldb: c_int,
);

const COLUMN_MAJOR: c_int = 102;
const LOWER: c_int = 122;
const NON_UNIT: c_int = 131;
const LEFT: c_int = 141;
const RIGHT: c_int = 142;

/// Columns per block. Matrices of at most two blocks go to LAPACK whole.
const BLOCK: usize = 256;

/// The routines, from the OpenBLAS library that `gemm` opened (symbols prefixed `scipy_`).
#[derive(Clone, Copy)]
pub struct Routines {
    potrf: PotrfFn,
    trtri: TrtriFn,
    dgemm: DgemmFn,
    dtrsm: TriangularFn,
    dtrmm: TriangularFn,
}

impl Routines {
    /// The routines of `library`, None when one is missing.
    pub(crate) fn find(library: &libloading::Library) -> Option<Routines> {
        // SAFETY: the symbols have the C signatures declared above (OpenBLAS 0.3's LAPACKE and CBLAS).
        unsafe {
            Some(Routines {
                potrf: *library.get::<PotrfFn>(b"scipy_LAPACKE_dpotrf\0").ok()?,
                trtri: *library.get::<TrtriFn>(b"scipy_LAPACKE_dtrtri\0").ok()?,
                dgemm: *library.get::<DgemmFn>(b"scipy_cblas_dgemm\0").ok()?,
                dtrsm: *library.get::<TriangularFn>(b"scipy_cblas_dtrsm\0").ok()?,
                dtrmm: *library.get::<TriangularFn>(b"scipy_cblas_dtrmm\0").ok()?,
            })
        }
    }
}

/// In place: the inverse of the lower Cholesky factor L of the symmetric `a` (`n × n` row-major, only its lower
/// triangle read), a = L Lᵀ, left in the lower triangle (the upper one is then unspecified). None without
/// OpenBLAS; Some(false) when `a` is not positive definite.
pub(crate) fn inverse_cholesky_factor(a: &mut [f64], n: usize) -> Option<bool> {
    let routines = super::gemm::factor_routines()?;
    assert_eq!(a.len(), n * n, "inverse_cholesky_factor: a is not n x n");
    c_int::try_from(n).ok()?;
    let threads = rayon::current_num_threads();
    Some(if threads > 1 && n > 2 * BLOCK { blocked(routines, a, n, BLOCK, threads) } else { whole(routines, a, n) })
}

/// One LAPACK call each, on the whole matrix.
fn whole(r: Routines, a: &mut [f64], n: usize) -> bool {
    // SAFETY: `a` holds exactly n² values with leading dimension n.
    unsafe { factor_block(r, a.as_mut_ptr(), n, n) && invert_block(r, a.as_mut_ptr(), n, n) }
}

/// In place, the lower Cholesky factor of the `w × w` block at `corner` (leading dimension `ld`); false when it is
/// not positive definite. Column-major, the row-major lower triangle is the upper one: a = UᵀU with U = Lᵀ there.
///
/// SAFETY: the block lies inside the caller's matrix.
unsafe fn factor_block(r: Routines, corner: *mut f64, w: usize, ld: usize) -> bool {
    unsafe { (r.potrf)(COLUMN_MAJOR, b'U' as c_char, w as c_int, corner, ld as c_int) == 0 }
}

/// In place, the inverse of the lower-triangular `w × w` block at `corner` (column-major, U⁻¹ = (L⁻¹)ᵀ as in
/// `factor_block`); false when it is singular.
///
/// SAFETY: the block lies inside the caller's matrix.
unsafe fn invert_block(r: Routines, corner: *mut f64, w: usize, ld: usize) -> bool {
    unsafe { (r.trtri)(COLUMN_MAJOR, b'U' as c_char, b'N' as c_char, w as c_int, corner, ld as c_int) == 0 }
}

/// The blocked algorithms, in `parts` threads.
fn blocked(r: Routines, a: &mut [f64], n: usize, block: usize, parts: usize) -> bool {
    let a = Matrix { base: a.as_mut_ptr(), n };
    let dim = |d: usize| d as c_int;
    let ld = dim(n);
    // Cholesky, right-looking: factor the diagonal block, solve the panel below it, update what is left.
    for j0 in (0..n).step_by(block) {
        let j1 = (j0 + block).min(n);
        let w = j1 - j0;
        // SAFETY (every call in this function): `Matrix::at` stays inside the n × n matrix, every call's region
        // (rows × columns at leading dimension n from its corner) lies inside it, and the parts run at once
        // write disjoint regions and read only regions no part writes in that step.
        if !unsafe { factor_block(r, a.at(j0, j0), w, n) } {
            return false;
        }
        let below = n - j1;
        in_parts(even_parts(below, parts), |rows| unsafe {
            let (m, corner) = (dim(rows.len()), a.at(j1 + rows.start, j0));
            (r.dtrsm)(ROW_MAJOR, RIGHT, LOWER, TRANS, NON_UNIT, m, dim(w), 1.0, a.at(j0, j0), ld, corner, ld)
        });
        // The trailing lower triangle −= panel · panelᵀ, rows cut for equal shares of the triangle.
        in_parts(super::gemm::triangle_parts(below, parts), |rows| unsafe {
            let (m, cols) = (dim(rows.len()), dim(rows.end));
            let (panel_rows, panel) = (a.at(j1 + rows.start, j0), a.at(j1, j0));
            let c = a.at(j1 + rows.start, j1);
            (r.dgemm)(ROW_MAJOR, NO_TRANS, TRANS, m, cols, dim(w), -1.0, panel_rows, ld, panel, ld, 1.0, c, ld)
        });
    }
    // The inverse, from the last block column: the part below a diagonal block becomes −X₂₂ B L_D⁻¹ (X₂₂ the
    // inverse already made), then the diagonal block is inverted.
    let last = (n - 1) / block * block;
    for j0 in (0..=last).rev().step_by(block) {
        let j1 = (j0 + block).min(n);
        let w = j1 - j0;
        let below = n - j1;
        if below > 0 {
            in_parts(even_parts(w, parts), |cols| unsafe {
                let b = a.at(j1, j0 + cols.start);
                (r.dtrmm)(
                    ROW_MAJOR,
                    LEFT,
                    LOWER,
                    NO_TRANS,
                    NON_UNIT,
                    dim(below),
                    dim(cols.len()),
                    1.0,
                    a.at(j1, j1),
                    ld,
                    b,
                    ld,
                )
            });
            in_parts(even_parts(below, parts), |rows| unsafe {
                let (m, b) = (dim(rows.len()), a.at(j1 + rows.start, j0));
                (r.dtrsm)(ROW_MAJOR, RIGHT, LOWER, NO_TRANS, NON_UNIT, m, dim(w), -1.0, a.at(j0, j0), ld, b, ld)
            });
        }
        if !unsafe { invert_block(r, a.at(j0, j0), w, n) } {
            return false;
        }
    }
    true
}

/// The matrix being factored, as a pointer the parts share.
#[derive(Clone, Copy)]
struct Matrix {
    base: *mut f64,
    n: usize,
}

// SAFETY: the parts that use a `Matrix` at once touch disjoint regions of it (see `blocked`).
unsafe impl Send for Matrix {}
unsafe impl Sync for Matrix {}

impl Matrix {
    /// The address of element (i, j); `i, j < n`.
    fn at(&self, i: usize, j: usize) -> *mut f64 {
        assert!(i < self.n && j < self.n, "factor: ({i}, {j}) outside the matrix");
        // SAFETY: inside the n × n allocation (asserted).
        unsafe { self.base.add(i * self.n + j) }
    }
}

/// `f` on each part, the first on this thread and the others on threads of their own.
fn in_parts(parts: Vec<Range<usize>>, f: impl Fn(Range<usize>) + Sync) {
    let mut parts = parts.into_iter().filter(|p| !p.is_empty());
    let Some(first) = parts.next() else { return };
    std::thread::scope(|scope| {
        for part in parts {
            let f = &f;
            scope.spawn(move || f(part));
        }
        f(first);
    });
}

/// `0..len` in `parts` ranges of equal length.
fn even_parts(len: usize, parts: usize) -> Vec<Range<usize>> {
    let cuts: Vec<usize> = (0..=parts).map(|t| len * t / parts).collect();
    cuts.windows(2).map(|c| c[0]..c[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_factor_is_the_whole_one() {
        let Some(routines) = super::super::gemm::factor_routines() else {
            eprintln!("OpenBLAS not found: the factor is made by plain loops, checked in gptq.rs");
            return;
        };
        // A symmetric positive definite matrix: B Bᵀ / k plus a little on the diagonal; ragged last block.
        let (n, k) = (150, 200);
        let b: Vec<f64> = (0..n * k).map(|i| ((i * 7919) % 211) as f64 / 50.0 - 2.0).collect();
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..k).map(|l| b[i * k + l] * b[j * k + l]).sum::<f64>() / k as f64;
            }
            a[i * n + i] += 0.1;
        }
        let mut whole_factor = a.clone();
        assert!(whole(routines, &mut whole_factor, n));
        for (block, parts) in [(16, 2), (32, 3), (64, 1)] {
            let mut blocked_factor = a.clone();
            assert!(blocked(routines, &mut blocked_factor, n, block, parts));
            for i in 0..n {
                for j in 0..=i {
                    let (w, b) = (whole_factor[i * n + j], blocked_factor[i * n + j]);
                    assert!((w - b).abs() <= 1e-9 * w.abs().max(1.0), "block {block}: ({i}, {j}): {w} vs {b}");
                }
            }
        }
        let mut not_positive = a.clone();
        not_positive[70 * n + 70] = -1.0;
        assert!(!blocked(routines, &mut not_positive, n, 16, 2));
    }
}
