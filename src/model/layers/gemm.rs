//! Matrix products of the forward pass (and of calibration's `x xᵀ` sums and GPTQ's error feedback): by our own
//! AVX-512 kernel where the CPU has AVX-512F (`avx512.rs`), else by OpenBLAS's `cblas_sgemm` when it is
//! installed (also for products of fewer than `AVX512_MIN_ROWS` rows), else by candle's own GEMM. OpenBLAS's LAPACK
//! and f64 BLAS also make GPTQ's update factors (`factor.rs`).
//!
//! The forward pass spends ~90% of its time in `x @ W^T`. OpenBLAS comes from PyPI's `scipy-openblas32` wheel
//! (fetched and hash-checked with the demo model, symbols prefixed `scipy_`), so a fresh machine needs no system
//! package. Measured on the 2-core reference machine, all candidates in one run (`x @ W^T` at SmolLM2's and
//! Llama-3.2-1B's shapes, 512 tokens): this OpenBLAS 0.3.34 at 160–280 GFLOP/s, faer 0.24 at 120–280 (weakest on
//! the LM head), Debian's OpenBLAS 0.3.21 at 110–280, and candle's GEMM at 75–160. `bench` prints which backend
//! ran and compares it with candle's in the same run. On an AVX-512 CPU our kernel reached 1.7x OpenBLAS's
//! throughput where `OPENBLAS_CORETYPE=Haswell` held OpenBLAS to AVX2 (single-threaded, SmolLM2's shapes).

use std::ffi::c_int;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::avx512;
use crate::error::Result;
use crate::model::tensor_io::with_f32_slice;

// CBLAS's enumerations (cblas.h), shared with `factor.rs`.
pub(super) const CBLAS_ROW_MAJOR: c_int = 101;
pub(super) const CBLAS_NO_TRANS: c_int = 111;
pub(super) const CBLAS_TRANS: c_int = 112;

/// `cblas_sgemm` (`T` = f32) and `cblas_dgemm` (`T` = f64).
pub(super) type GemmFn<T> = unsafe extern "C" fn(
    layout: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: T,
    a: *const T,
    lda: c_int,
    b: *const T,
    ldb: c_int,
    beta: T,
    c: *mut T,
    ldc: c_int,
);
type SgemmFn = GemmFn<f32>;

type SetThreadsFn = unsafe extern "C" fn(threads: c_int);

type CoreNameFn = unsafe extern "C" fn() -> *const std::ffi::c_char;

struct Blas {
    sgemm: SgemmFn,
    /// The f64 routines of GPTQ's update factors, where the library has them.
    factor: Option<super::factor::Routines>,
    /// The kernel family OpenBLAS chose (`SkylakeX`, `Haswell`, ...).
    core: String,
    _library: libloading::Library,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
static FAST_KERNELS_ENABLED: AtomicBool = AtomicBool::new(true);

fn blas() -> Option<&'static Blas> {
    if !FAST_KERNELS_ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    BLAS.get_or_init(open_blas).as_ref()
}

/// PyPI's OpenBLAS build for x86-64 Linux (DYNAMIC_ARCH: it picks its kernels by the CPU it runs on).
pub const OPENBLAS: crate::pypi::Asset = crate::pypi::Asset {
    package: "scipy-openblas32==0.3.34.481.3",
    wheel_sha256: "0595f94cd58c1f8a0d90c975621f4587337a003916b1979e834ebdf2cb5d9504",
    member: "scipy_openblas32/lib/libscipy_openblas.so",
    member_sha256: "b396d74f12ab4319e6713b3287104d64245c76c60e5bd9eaeb4b447eda66a561",
    cached_name: "libscipy_openblas.so",
    what: "OpenBLAS",
};

/// Whether this platform has a pinned OpenBLAS wheel to fetch.
pub const OPENBLAS_AVAILABLE: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

/// Fetches OpenBLAS into the cache where this platform has a pinned build. A failure is logged, not returned:
/// without it everything runs, on candle's slower GEMM.
pub fn install_openblas(log: &mut dyn FnMut(&str)) {
    if !OPENBLAS_AVAILABLE {
        log("no pinned OpenBLAS build for this platform: matrix products run on candle's GEMM");
    } else if let Err(e) = OPENBLAS.fetch(log) {
        log(&format!("OpenBLAS not installed ({e}): matrix products run on candle's slower GEMM"));
    }
}

fn open_blas() -> Option<Blas> {
    if std::env::var_os("NASH_SWARM_NO_BLAS").is_some() || !OPENBLAS_AVAILABLE {
        return None;
    }
    let path = OPENBLAS.installed()?;
    // SAFETY: OpenBLAS's initialisers are safe to run; the symbols have the C signatures declared above, and the
    // file is the one whose hash `install_openblas` checked.
    unsafe {
        let library = libloading::Library::new(&path).ok()?;
        let sgemm = *library.get::<SgemmFn>(b"scipy_cblas_sgemm\0").ok()?;
        // One OpenBLAS thread per call: rayon splits the work, so OpenBLAS's spinning workers never compete with
        // ours and concurrent jobs stay safe.
        let set_threads = *library.get::<SetThreadsFn>(b"scipy_openblas_set_num_threads\0").ok()?;
        set_threads(1);
        let core = match library.get::<CoreNameFn>(b"scipy_openblas_get_corename\0") {
            Ok(name) => std::ffi::CStr::from_ptr(name()).to_string_lossy().into_owned(),
            Err(_) => "unknown".into(),
        };
        let factor = super::factor::Routines::find(&library);
        Some(Blas { sgemm, factor, core, _library: library })
    }
}

/// The backend the forward pass uses right now, for reports. OpenBLAS picks its kernels by the CPU unless
/// `OPENBLAS_CORETYPE` names them (a machine-wide setting meant for every OpenBLAS, ours included): said, as it
/// can halve the speed (Haswell's AVX2 kernels on an AVX-512 CPU).
pub fn backend_name() -> String {
    let blas = match (blas(), std::env::var("OPENBLAS_CORETYPE")) {
        (None, _) => "candle".to_string(),
        (Some(blas), Ok(asked)) if !asked.is_empty() => {
            format!("OpenBLAS ({} kernels, as OPENBLAS_CORETYPE={asked} asks)", blas.core)
        }
        (Some(blas), _) => format!("OpenBLAS ({} kernels)", blas.core),
    };
    if avx512_enabled() { format!("own AVX-512 kernel ({blas} for products of fewer than 16 rows)") } else { blas }
}

/// Whether OpenBLAS runs the forward pass's products (neither our kernel nor candle's).
pub fn openblas_runs_the_products() -> bool {
    blas().is_some() && !avx512_enabled()
}

/// Turns our AVX-512 kernel and OpenBLAS off or back on (benchmarks compare them with candle in one run).
pub fn set_fast_kernels_enabled(enabled: bool) {
    FAST_KERNELS_ENABLED.store(enabled, Ordering::Relaxed);
}

fn avx512_enabled() -> bool {
    FAST_KERNELS_ENABLED.load(Ordering::Relaxed) && avx512::available()
}

/// OpenBLAS's f64 routines for GPTQ's update factors, when it is installed and has them.
pub(crate) fn factor_routines() -> Option<super::factor::Routines> {
    blas()?.factor
}

/// Single-threaded `C = alpha * A @ op(B)` on row-major slices, where `op(B)` is `B^T` when `b_transposed`.
/// A is `m x k` (row stride `lda`), op(B) is `k x n`, C is `m x n` (row stride `ldc`).
#[derive(Clone, Copy)]
pub(crate) struct Sgemm(&'static Blas);

pub(crate) struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub b_transposed: bool,
}

impl Sgemm {
    pub(crate) fn get() -> Option<Sgemm> {
        blas().map(Sgemm)
    }

    pub(crate) fn run(&self, s: &GemmShape, alpha: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
        self.call(s, alpha, 0.0, a, b, c)
    }

    /// `C += alpha * A @ op(B)`.
    pub(crate) fn accumulate(&self, s: &GemmShape, alpha: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
        self.call(s, alpha, 1.0, a, b, c)
    }

    fn call(&self, s: &GemmShape, alpha: f32, beta: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (b_rows, b_cols) = if s.b_transposed { (s.n, s.k) } else { (s.k, s.n) };
        // Bounds are checked here so the unsafe call below can never read or write outside the slices.
        assert!(s.m == 0 || a.len() >= (s.m - 1) * s.lda + s.k, "sgemm: A too short");
        assert!(b_rows == 0 || b.len() >= (b_rows - 1) * s.ldb + b_cols, "sgemm: B too short");
        assert!(s.m == 0 || c.len() >= (s.m - 1) * s.ldc + s.n, "sgemm: C too short");
        assert!(s.lda >= s.k && s.ldb >= b_cols && s.ldc >= s.n, "sgemm: leading dimension too small");
        assert!([s.m, s.n, s.k, s.lda, s.ldb, s.ldc].iter().all(|&d| c_int::try_from(d).is_ok()));
        if s.m == 0 || s.n == 0 {
            return;
        }
        let trans_b = if s.b_transposed { CBLAS_TRANS } else { CBLAS_NO_TRANS };
        // SAFETY: the assertions above keep every access inside the slices; sizes fit a C int.
        unsafe {
            (self.0.sgemm)(
                CBLAS_ROW_MAJOR,
                CBLAS_NO_TRANS,
                trans_b,
                s.m as c_int,
                s.n as c_int,
                s.k as c_int,
                alpha,
                a.as_ptr(),
                s.lda as c_int,
                b.as_ptr(),
                s.ldb as c_int,
                beta,
                c.as_mut_ptr(),
                s.ldc as c_int,
            )
        }
    }
}

/// `x @ w^T` for `x: [m, k]` and `w: [n, k]`, both f32.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let candle = || Ok(x.matmul(&w.t()?)?);
    let (DType::F32, DType::F32) = (x.dtype(), w.dtype()) else { return candle() };
    let (m, k) = x.dims2()?;
    let (n, k_w) = w.dims2()?;
    if k == 0 || k != k_w || [m, n, k].iter().any(|&d| c_int::try_from(d).is_err()) {
        // candle reports the shape mismatch (or handles sizes beyond a C int).
        return candle();
    }
    let Some(kernel) = Kernel::for_rows(m) else { return candle() };
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let out = with_f32_slice(&x, |a| with_f32_slice(&w, |b| split_product(kernel, a, b, m, n, k)))??;
    Ok(Tensor::from_vec(out, (m, n), &Device::Cpu)?)
}

/// Below this many rows of the left operand, OpenBLAS (when installed) runs a product rather than our kernel.
const AVX512_MIN_ROWS: usize = 16;

/// A single-threaded kernel for a share of a product: our AVX-512 one or OpenBLAS's sgemm.
#[derive(Clone, Copy)]
pub(crate) enum Kernel {
    Avx512,
    Blas(Sgemm),
}

impl Kernel {
    /// The kernel for `m` rows of the left operand, None when only candle's GEMM is left. Ours packs all of the
    /// right operand for every product, which a handful of rows does not repay when OpenBLAS is there.
    pub(crate) fn for_rows(m: usize) -> Option<Kernel> {
        let blas = Kernel::blas();
        match Kernel::avx512() {
            Some(ours) if m >= AVX512_MIN_ROWS || blas.is_none() => Some(ours),
            _ => blas,
        }
    }

    /// OpenBLAS's kernel, when it is installed and enabled.
    pub(crate) fn blas() -> Option<Kernel> {
        Sgemm::get().map(Kernel::Blas)
    }

    /// Our AVX-512 kernel, when the CPU has it and it is enabled.
    pub(crate) fn avx512() -> Option<Kernel> {
        avx512_enabled().then_some(Kernel::Avx512)
    }

    /// `c = a @ b^T` for `a: [m, k]`, `b: [n, k]`, `c: [m, n]` with row stride `ldc`.
    pub(crate) fn a_bt(self, a: &[f32], b: &[f32], c: &mut [f32], shape: (usize, usize, usize), ldc: usize) {
        self.product(a, b, BLayout::Rows, c, shape, ldc, false)
    }

    /// `c += a @ b^T`, shapes as in `a_bt`.
    pub(crate) fn add_a_bt(self, a: &[f32], b: &[f32], c: &mut [f32], shape: (usize, usize, usize), ldc: usize) {
        self.product(a, b, BLayout::Rows, c, shape, ldc, true)
    }

    /// `c = a @ b` for `a: [m, k]`, `b: [k, n]`, `c: [m, n]` with row stride `ldc`.
    pub(crate) fn a_b(self, a: &[f32], b: &[f32], c: &mut [f32], shape: (usize, usize, usize), ldc: usize) {
        self.product(a, b, BLayout::Columns, c, shape, ldc, false)
    }

    /// `c += a @ b`, shapes as in `a_b`.
    pub(crate) fn add_a_b(self, a: &[f32], b: &[f32], c: &mut [f32], shape: (usize, usize, usize), ldc: usize) {
        self.product(a, b, BLayout::Columns, c, shape, ldc, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn product(
        self,
        a: &[f32],
        b: &[f32],
        layout: BLayout,
        c: &mut [f32],
        (m, n, k): (usize, usize, usize),
        ldc: usize,
        add: bool,
    ) {
        match self {
            Kernel::Avx512 => avx512::product(a, b, layout, c, (m, n, k), ldc, add),
            Kernel::Blas(sgemm) => {
                let (ldb, b_transposed) = match layout {
                    BLayout::Rows => (k, true),
                    BLayout::Columns => (n, false),
                };
                let shape = GemmShape { m, n, k, lda: k, ldb, ldc, b_transposed };
                if add { sgemm.accumulate(&shape, 1.0, a, b, c) } else { sgemm.run(&shape, 1.0, a, b, c) }
            }
        }
    }
}

/// How a product's right operand holds the output's columns: as its rows (`b: [n, k]`, the product `a @ b^T`) or
/// as its columns (`b: [k, n]`, the product `a @ b`).
#[derive(Clone, Copy)]
pub enum BLayout {
    Rows,
    Columns,
}

/// The lower triangle of `sums += a @ a^T` for `a` `n × k` and `sums` `n × n`, row-major f32 (calibration's
/// Σ x xᵀ, with `a` the inputs transposed): added in place, so no `n × n` product exists beside the sums. Only the
/// triangle is owed (half the work): above the diagonal `sums` is left partly added to, for `mirror_lower` to
/// overwrite once the sums are complete.
pub fn add_gram_lower(a: &[f32], n: usize, k: usize, sums: &mut [f32]) -> Result<()> {
    assert_eq!((a.len(), sums.len()), (n * k, n * n), "add_gram_lower: a is not n x k or the sums not n x n");
    if k == 0 || n == 0 {
        return Ok(());
    }
    let tasks = rayon::current_num_threads().max(1);
    let Some(any) = Kernel::for_rows(n.div_ceil(tasks)).filter(|_| c_int::try_from(n.max(k)).is_ok()) else {
        let a = Tensor::from_slice(a, (n, k), &Device::Cpu)?;
        let product = a.matmul(&a.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        sums.iter_mut().zip(&product).for_each(|(s, p)| *s += p);
        return Ok(());
    };
    let mut pieces = Vec::with_capacity(tasks);
    let mut rest = sums;
    for rows in triangle_parts(n, tasks) {
        let (piece, after) = rest.split_at_mut(rows.len() * n);
        pieces.push((rows, piece));
        rest = after;
    }
    pieces.into_par_iter().filter(|(rows, _)| !rows.is_empty()).for_each(|(rows, c)| {
        let kernel = Kernel::for_rows(rows.len()).unwrap_or(any);
        kernel.add_a_bt(&a[rows.start * k..rows.end * k], &a[..rows.end * k], c, (rows.len(), rows.end, k), n);
    });
    Ok(())
}

/// Rows `0..len` cut into `parts` ranges for products over a lower triangle, where a part's product covers its
/// rows times every column up to its last row: the cuts make those rectangles the same size. From the end, a
/// part ending at row c with area A starts at c − A / c; A is found by bisection so that the first part starts at 0.
pub(crate) fn triangle_parts(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let starts = |area: f64| {
        let mut cuts = vec![len as f64];
        for _ in 0..parts {
            let end = *cuts.last().expect("not empty");
            cuts.push(if end > 0.0 { (end - area / end).max(0.0) } else { 0.0 });
        }
        cuts.reverse();
        cuts
    };
    // Too large an area leaves the first part empty (start 0 reached early), too small one starts above 0.
    let (mut low, mut high) = (0.0, (len * len) as f64);
    for _ in 0..60 {
        let mid = 0.5 * (low + high);
        if starts(mid)[0] > 0.0 { low = mid } else { high = mid }
    }
    let mut cuts: Vec<usize> = starts(high).iter().map(|&c| (c.round() as usize).min(len)).collect();
    (cuts[0], cuts[parts]) = (0, len);
    cuts.windows(2).map(|c| c[0]..c[1].max(c[0])).collect()
}

/// Copies the lower triangle of the row-major `n × n` `sums` onto the upper one (see `add_gram_lower`).
pub fn mirror_lower(sums: &mut [f32], n: usize) {
    assert_eq!(sums.len(), n * n, "mirror_lower: not n x n");
    // Tile by tile, so that the column read for each row stays in cache (n reaches 14336).
    const TILE: usize = 64;
    for i0 in (0..n).step_by(TILE) {
        for j0 in (i0..n).step_by(TILE) {
            for i in i0..(i0 + TILE).min(n) {
                for j in j0.max(i + 1)..(j0 + TILE).min(n) {
                    sums[i * n + j] = sums[j * n + i];
                }
            }
        }
    }
}

/// `c += a @ b` for row-major `a: [m, k]`, `b: [k, n]` and `c: [m, n]`, the rows split over rayon's threads (by
/// plain loops when neither fast kernel is here: row r of `c` takes `a_rt` times row t of `b`, for t in order).
pub(crate) fn add_matmul(a: &[f32], b: &[f32], c: &mut [f32], (m, n, k): (usize, usize, usize)) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "add_matmul: shapes do not match");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let rows_per_task = m.div_ceil(rayon::current_num_threads()).max(1);
    let Some(kernel) = Kernel::for_rows(rows_per_task).filter(|_| c_int::try_from(m.max(n).max(k)).is_ok()) else {
        c.par_chunks_mut(n).zip(a.par_chunks(k)).for_each(|(c, a)| {
            for (&a, b) in a.iter().zip(b.chunks_exact(n)) {
                c.iter_mut().zip(b).for_each(|(c, b)| *c += a * b);
            }
        });
        return;
    };
    c.par_chunks_mut(rows_per_task * n).zip(a.par_chunks(rows_per_task * k)).for_each(|(c, a)| {
        kernel.add_a_b(a, b, c, (a.len() / k, n, k), n);
    });
}

/// `a @ b^T` (`a: [m, k]`, `b: [n, k]`) across rayon's threads, each running a single-threaded sgemm on a share
/// of the larger side: every task packs all of the other operand, so splitting the rows of a small `a` (a short
/// window against a wide LM head) would pack the whole of `b` once per thread.
fn split_product(kernel: Kernel, a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let threads = rayon::current_num_threads();
    let mut out = vec![0f32; m * n];
    if m == 0 {
        return out;
    }
    if m >= n || threads == 1 {
        let rows_per_task = m.div_ceil(threads).max(1);
        out.par_chunks_mut(rows_per_task * n).zip(a.par_chunks(rows_per_task * k)).for_each(|(c, a)| {
            kernel.a_bt(a, b, c, (a.len() / k, n, k), n);
        });
        return out;
    }
    // Column blocks of the output, each computed into its own buffer and copied into place.
    let cols_per_task = n.div_ceil(threads).next_multiple_of(16).min(n);
    let blocks: Vec<(usize, Vec<f32>)> = b
        .par_chunks(cols_per_task * k)
        .enumerate()
        .map(|(i, b)| {
            let cols = b.len() / k;
            let mut c = vec![0f32; m * cols];
            kernel.a_bt(a, b, &mut c, (m, cols, k), cols);
            (i * cols_per_task, c)
        })
        .collect();
    for (first, block) in blocks {
        let cols = block.len() / m;
        for (row, values) in out.chunks_exact_mut(n).zip(block.chunks_exact(cols)) {
            row[first..first + cols].copy_from_slice(values);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_gram_lower_then_mirror_lower_add_a_at_to_the_sums() {
        // Rows enough for our kernel in every task, and few enough for OpenBLAS's.
        for (n, k) in [(37, 70), (101, 33)] {
            add_gram_and_check(n, k);
        }
    }

    fn add_gram_and_check(n: usize, k: usize) {
        let a: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0).collect();
        // Symmetric sums to start from, as the sums of earlier windows are.
        let mut sums: Vec<f32> = (0..n * n).map(|e| ((e / n) * (e % n) % 23) as f32).collect();
        add_gram_lower(&a, n, k, &mut sums).unwrap();
        mirror_lower(&mut sums, n);
        for i in 0..n {
            for j in 0..n {
                let start = (i * j % 23) as f64;
                let want = start + (0..k).map(|l| a[i * k + l] as f64 * a[j * k + l] as f64).sum::<f64>();
                assert!((sums[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "({i}, {j})");
            }
        }
    }

    #[test]
    fn matmul_t_matches_f64_loops_on_odd_shapes() {
        // Wide and tall: the work is split by output columns in one, by rows in the other.
        for (m, n, k) in [(37, 53, 70), (53, 37, 70), (3, 1000, 9)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 197) as f32 / 40.0 - 2.4).collect();
            let got = matmul_t(
                &Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap(),
                &Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap(),
            )
            .unwrap();
            eprintln!("matmul backend: {}", backend_name());
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|l| x[i * k + l] as f64 * w[j * k + l] as f64).sum();
                    assert!((got[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn triangle_parts_cover_the_rows_in_products_of_one_size() {
        for (len, parts) in [(1000, 2), (8192, 3), (5, 4), (1, 2), (0, 2)] {
            let cut = triangle_parts(len, parts);
            assert_eq!((cut.len(), cut[0].start, cut[parts - 1].end), (parts, 0, len), "{len} in {parts}");
            assert!(cut.windows(2).all(|w| w[0].end == w[1].start), "{len} in {parts}: {cut:?}");
            if len >= 1000 {
                let areas: Vec<f64> = cut.iter().map(|r| (r.len() * r.end) as f64).collect();
                let (min, max) = areas.iter().fold((f64::MAX, 0f64), |(lo, hi), &a| (lo.min(a), hi.max(a)));
                assert!(max / min < 1.01, "{len} in {parts}: {areas:?}");
            }
        }
    }
}
