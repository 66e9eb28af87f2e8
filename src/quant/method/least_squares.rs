//! Least-squares grids: each block's scale (and min) chosen to minimise the importance-weighted squared error
//! Σ a_j (w_j − q(w_j))², where a_j is E[x_j²] of the weight's input column on calibration text (so the sum is
//! the expected squared error of the layer's output), or 1 without calibration. Codes are then rounded to the
//! nearest level exactly as in `rtn`, and the stored form is the same: only the grid differs.
//!
//! The search is llama.cpp's (`make_qkx2_quants`): a range of candidate inverse scales around the min-max one,
//! the codes each gives, and for those codes the (scale, min) that solve the weighted least-squares problem in
//! closed form; the best candidate is refined by re-coding and solving again. Unlike llama.cpp it compares
//! candidates by their closed-form error and solves only the best. The min-max grid is a candidate too, so a
//! least-squares grid never has a larger weighted error than RTN's on its block.

use half::f16;

use super::rtn::{self, GridFit};
use super::{InputStats, Quantizer, TierSource};
use crate::quant::spec::{Grid, TensorPlan};
use crate::quant::stored::{BlockGrid, QuantizedTensor};

/// Importance-weighted least-squares scale (and min) per block, round to nearest.
pub struct LeastSquares;

impl Quantizer for LeastSquares {
    fn name(&self) -> &'static str {
        "least-squares"
    }
    fn quantize(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        plan: &TensorPlan,
        tiers: &TierSource,
        inputs: InputStats,
    ) -> QuantizedTensor {
        let weights = column_weights(inputs.mean_square, cols);
        rtn::quantize_fitted(w, rows, cols, plan, tiers, GridFit::LeastSquares(&weights))
    }
}

/// Per-column weights scaled to mean 1, with a floor so that a column never seen active (E[x²] = 0) still has
/// its error counted a little and no block's problem is degenerate. Without calibration every column counts 1.
pub fn column_weights(columns: Option<&[f32]>, cols: usize) -> Vec<f32> {
    let Some(c) = columns.filter(|c| c.len() == cols) else { return vec![1.0; cols] };
    let mean = c.iter().map(|&v| v.max(0.0) as f64).sum::<f64>() / cols.max(1) as f64;
    if !(mean > 0.0 && mean.is_finite()) {
        return vec![1.0; cols];
    }
    c.iter().map(|&v| (v.max(0.0) as f64 / mean) as f32 + FLOOR).collect()
}

const FLOOR: f32 = 1e-3;
/// Candidate inverse scales: (levels + RMIN + RDELTA·i) / range for i in 0..=NSTEP (llama.cpp's Q4_K search).
const RMIN: f32 = -1.0;
const RDELTA: f32 = 0.1;
const NSTEP: usize = 20;
/// Re-code-and-solve rounds after the search.
const REFINE: usize = 2;

crate::math::dispatch! {
    /// The grid of one tier of one block: values `x` with weights `a`, spanning `[lo, hi]` (compiled for AVX2
    /// where the CPU has it: the search is most of a least-squares quantization's time).
    pub fn fit(grid: Grid, bits: u8, x: &[f32], a: &[f32], lo: f32, hi: f32) -> BlockGrid {
        let min_max = rtn::fit(grid, bits, lo, hi);
        if hi <= lo || x.len() < 2 {
            return min_max;
        }
        let candidate = match grid {
            Grid::Asymmetric => search_asymmetric(bits, x, a, lo, hi),
            Grid::Symmetric => search_symmetric(bits, x, a, lo.abs().max(hi.abs())),
        };
        let Some(candidate) = candidate.and_then(|(scale, min)| stored(grid, bits, scale, min)) else {
            return min_max;
        };
        let [least_squares, rtn] = weighted_errors([&candidate, &min_max], x, a);
        if least_squares < rtn { candidate } else { min_max }
    }
}

/// The best (scale, min) of the asymmetric search, before f16 rounding. Candidates are compared by their
/// closed-form error alone; only the best is solved for its grid.
#[inline(always)]
fn search_asymmetric(bits: u8, x: &[f32], a: &[f32], lo: f32, hi: f32) -> Option<(f32, f32)> {
    let levels = ((1u32 << bits) - 1) as f32;
    let sums = Sums::of(x, a);
    let lattice = |shift: f32, inv_scale: f32| Lattice { shift, inv_scale, offset: 0.0, max_code: levels };
    let sweep = Sweep::new(lo, 0.0, levels, levels + RMIN, hi - lo);
    let mut best = least(&sweep.code_sums(x, a), |codes| sums.asymmetric_error(codes));
    for _ in 0..REFINE {
        let (scale, min) = sums.solve_asymmetric(&best?.1);
        let codes = code_sums(x, a, lattice(min, 1.0 / scale));
        keep_better(&mut best, sums.asymmetric_error(&codes), codes);
    }
    Some(sums.solve_asymmetric(&best?.1))
}

/// The best scale of the symmetric search (levels −m..m, zero a level), before f16 rounding.
#[inline(always)]
fn search_symmetric(bits: u8, x: &[f32], a: &[f32], amax: f32) -> Option<(f32, f32)> {
    let m = ((1u32 << (bits - 1)) - 1) as f32;
    let sums = Sums::of(x, a);
    let lattice = |inv_scale: f32| Lattice { shift: 0.0, inv_scale, offset: m, max_code: 2.0 * m };
    let sweep = Sweep::new(0.0, m, 2.0 * m, m - 0.5, amax);
    let mut best = least(&sweep.code_sums(x, a), |codes| sums.symmetric_error(codes));
    for _ in 0..REFINE {
        let codes = code_sums(x, a, lattice(1.0 / symmetric_scale(&best?.1)));
        keep_better(&mut best, sums.symmetric_error(&codes), codes);
    }
    Some((symmetric_scale(&best?.1), 0.0))
}

/// The search's candidate grids, all at once. Candidate k has the inverse scale (first + RDELTA·k) / range on
/// `lattice`'s shift and offset. As k grows a weight's code only moves one way (up for weights above the
/// shift), and over the whole sweep by at most RDELTA·NSTEP = 2 steps: so each weight adds its terms at
/// candidate 0 and, at the (at most two) candidates where its code moves, the change; a running total then
/// gives every candidate's sums, at about the cost of coding three candidates one by one instead of 21.
#[derive(Clone, Copy)]
struct Sweep {
    /// Candidate 0's lattice.
    lattice: Lattice,
    /// How much each candidate adds to the inverse scale: RDELTA / range.
    step: f32,
}

/// A run's code moves go to bins by candidate: 1..=NSTEP, then bins for the moves that never come (by move
/// and by step of eight weights, in rotation). Lane j uses set j % SETS. The sets and the rotation keep
/// successive additions off one address, where each would wait for the one before.
const SETS: usize = 4;
const ROTATION: usize = 4;
const BINS: usize = NSTEP + 1 + 2 * ROTATION;

/// The bin of a move that does not come: the `j`th move of a weight in the `i`th step of eight weights.
#[inline(always)]
fn never(i: usize, j: usize) -> usize {
    NSTEP + 1 + 2 * (i % ROTATION) + j
}

/// A weight's code move: its candidate (None when it does not come) and the change in (a l, a l², a l x).
type Move = (Option<usize>, [f32; 3]);

/// One run's sweep in f32: candidate 0's (Σ a l, Σ a l², Σ a l x) in eight lanes, and per set and candidate
/// the change in them from the codes that move there (a fourth, zero term pads each bin to a vector).
#[derive(Clone, Copy, PartialEq, Debug)]
struct RunSweep {
    first: [[f32; 8]; 3],
    moves: [[[f32; 4]; BINS]; SETS],
}

impl Sweep {
    fn new(shift: f32, offset: f32, max_code: f32, first: f32, range: f32) -> Sweep {
        Sweep { lattice: Lattice { shift, inv_scale: first / range, offset, max_code }, step: RDELTA / range }
    }

    /// The code sums of candidates 0..=NSTEP.
    #[inline(always)]
    fn code_sums(&self, x: &[f32], a: &[f32]) -> [CodeSums; NSTEP + 1] {
        // Candidate 0's sums, then each candidate's change from the one before.
        // Four terms per candidate (the fourth the bins' padding) so that each bin's addition is one vector's.
        let mut changes = [[0f64; 4]; NSTEP + 1];
        for (xs, ws) in x.chunks(RUN).zip(a.chunks(RUN)) {
            let mut run = RunSweep::EMPTY;
            if !avx2::sweep_run(xs, ws, self, &mut run) {
                self.run(xs, ws, &mut run);
            }
            for (change, first) in changes[0].iter_mut().zip(run.first) {
                *change += lane_total(first);
            }
            for set in &run.moves {
                for k in 1..=NSTEP {
                    for t in 0..4 {
                        changes[k][t] += set[k][t] as f64;
                    }
                }
            }
        }
        let mut sums = CodeSums { al: 0.0, all: 0.0, alx: 0.0 };
        std::array::from_fn(|k| {
            let [al, all, alx, _] = changes[k];
            (sums.al, sums.all, sums.alx) = (sums.al + al, sums.all + all, sums.alx + alx);
            sums
        })
    }

    /// A run's sweep added into an empty `run`, portably (`avx2::sweep_run` does the same operations in the same
    /// order).
    #[inline(always)]
    fn run(&self, x: &[f32], a: &[f32], run: &mut RunSweep) {
        for (i, (&x, &a)) in x.iter().zip(a).enumerate() {
            run.add_weight(self, i, x, a);
        }
    }

    /// One weight's level at candidate 0 and its two possible moves: the candidate where each happens (None
    /// when it does not) and the change in (a l, a l², a l x).
    #[inline(always)]
    fn weight(&self, x: f32, a: f32) -> (f32, [Move; 2]) {
        let Lattice { shift, offset, max_code, .. } = self.lattice;
        // Candidate 0's code as the lattice rounds it; the unrounded code moves by `rate` per candidate.
        let c = self.lattice.unrounded(x);
        let code = self.lattice.code(c);
        let level = code - offset;
        let rate = (x - shift) * self.step;
        let rising = rate > 0.0;
        let (scale, direction) = if rising { (1.0 / rate, 1.0) } else { (-(1.0 / rate), -1.0) };
        // (Called twice by name rather than through `array::map`, which is not inlined: the kernel's tail would
        // call libm's `ceilf`.)
        let move_by = |j: f32| -> Move {
            // Rising: the first k with c + k·rate ≥ code + j. Falling: the first k with c + k·rate < code − j + 1.
            let (distance, target) =
                if rising { ((code + j) - c, code + j) } else { ((c - code) + (j - 1.0), code - j) };
            let t = distance * scale;
            let k = if rising { t.ceil() } else { t.floor() + 1.0 };
            let possible = if rising { target <= max_code } else { target >= 0.0 };
            let comes = possible && (rising || rate < 0.0) && k <= NSTEP as f32;
            let bin = comes.then(|| k.max(1.0) as usize);
            let from = (direction * (j - 1.0)) + level;
            let signed = a * direction;
            (bin, [signed, a * ((from * direction) * 2.0 + 1.0), signed * x])
        };
        (level, [move_by(1.0), move_by(2.0)])
    }
}

impl RunSweep {
    const EMPTY: RunSweep = RunSweep { first: [[0.0; 8]; 3], moves: [[[0.0; 4]; BINS]; SETS] };

    /// Adds the `i`th weight of the run.
    #[inline(always)]
    fn add_weight(&mut self, sweep: &Sweep, i: usize, x: f32, a: f32) {
        let lane = i % 8;
        let (level, moves) = sweep.weight(x, a);
        let wl = a * level;
        self.first[0][lane] += wl;
        self.first[1][lane] = wl.mul_add(level, self.first[1][lane]);
        self.first[2][lane] = wl.mul_add(x, self.first[2][lane]);
        for (j, (bin, change)) in moves.into_iter().enumerate() {
            let bin = bin.unwrap_or(never(i / 8, j));
            for (m, c) in self.moves[lane % SETS][bin].iter_mut().zip(change) {
                *m += c;
            }
        }
    }
}

/// The candidate of least error (the first of equal ones), when any has one. The errors are all computed
/// first, so their divisions run side by side and only the choice is sequential.
#[inline(always)]
fn least(candidates: &[CodeSums; NSTEP + 1], error: impl Fn(&CodeSums) -> Option<f64>) -> Option<(f64, CodeSums)> {
    let mut errors = [0f64; NSTEP + 1];
    for (e, c) in errors.iter_mut().zip(candidates) {
        *e = error(c).unwrap_or(f64::INFINITY);
    }
    // The least so far held in a register: indexing `errors` by `best` would chain a load into every step.
    let (mut best, mut least) = (0, errors[0]);
    for (k, &e) in errors.iter().enumerate().skip(1) {
        (best, least) = if e < least { (k, e) } else { (best, least) };
    }
    (least < f64::INFINITY).then(|| (least, candidates[best]))
}

/// Keeps the candidate's code sums when its error is the smaller (and it has one: a usable grid).
#[inline(always)]
fn keep_better(best: &mut Option<(f64, CodeSums)>, error: Option<f64>, codes: CodeSums) {
    if let Some(error) = error.filter(|&e| best.as_ref().is_none_or(|b| e < b.0)) {
        *best = Some((error, codes));
    }
}

/// The candidate as stored (f16 parameters), when it is a usable grid.
#[inline(always)]
fn stored(grid: Grid, bits: u8, scale: f32, min: f32) -> Option<BlockGrid> {
    let (scale, min) = (f16::from_f32(scale), f16::from_f32(min));
    (scale.is_finite() && min.is_finite() && scale.to_f32() > 0.0).then_some(BlockGrid { scale, min, grid, bits })
}

/// Σ a (x − q(x))² on each grid, codes rounded to nearest as the coder does: one pass over the weights for all
/// grids, each summed in 8 f32 lanes per run, then f64.
#[inline(always)]
pub fn weighted_errors<const G: usize>(grids: [&BlockGrid; G], x: &[f32], a: &[f32]) -> [f64; G] {
    let grids = grids.map(|grid| {
        let fast = grid.fast();
        let lattice =
            Lattice { shift: fast.min, inv_scale: fast.inv_scale, offset: fast.offset, max_code: fast.max_code };
        (lattice, fast.scale, fast.min)
    });
    let mut totals = [0f64; G];
    for (xs, ws) in x.chunks(RUN).zip(a.chunks(RUN)) {
        let mut acc = [[0f32; 8]; G];
        in_lanes::<8>(xs, ws, |j, v, w| {
            for ((lattice, scale, min), acc) in grids.iter().zip(acc.iter_mut()) {
                let d = v - (lattice.level(v) * scale + min);
                acc[j] += w * d * d;
            }
        });
        for (total, acc) in totals.iter_mut().zip(acc) {
            *total += lane_total(acc);
        }
    }
    totals
}

/// The lanes of (Σ w·l, Σ w·l², Σ w·l·x) over a run, l the levels `lattice` gives `x`: sixteen lanes, so that
/// two independent chains of sums hide the additions' latency (a block of 128 weights is only 8 steps).
#[inline(always)]
fn level_sums_run(x: &[f32], w: &[f32], lattice: Lattice) -> [[f32; 16]; 3] {
    let mut s = [[0f32; 16]; 3];
    in_lanes::<16>(x, w, |j, x, w| add_level(&mut s, j, x, w, lattice));
    s
}

/// Calls `add(j, x, a)` for every weight in order, j its lane (its index modulo L), in whole steps of L and then
/// the rest: the shape of loop that vectorizes into L lanes of sums.
#[inline(always)]
fn in_lanes<const L: usize>(x: &[f32], a: &[f32], mut add: impl FnMut(usize, f32, f32)) {
    let (xc, ac) = (x.chunks_exact(L), a.chunks_exact(L));
    let (xr, ar) = (xc.remainder(), ac.remainder());
    for (x, a) in xc.zip(ac) {
        for j in 0..L {
            add(j, x[j], a[j]);
        }
    }
    for (j, (&x, &a)) in xr.iter().zip(ar).enumerate() {
        add(j, x, a);
    }
}

/// One weight's terms added to lane `j` of the sums.
#[inline(always)]
fn add_level(s: &mut [[f32; 16]; 3], j: usize, x: f32, w: f32, lattice: Lattice) {
    let l = lattice.level(x);
    let wl = w * l;
    s[0][j] += wl;
    s[1][j] = wl.mul_add(l, s[1][j]);
    s[2][j] = wl.mul_add(x, s[2][j]);
}

/// The lanes widened to f64 and added pairwise (the closed-form errors subtract sums of this size from each
/// other), in an order that vectorizes.
#[inline(always)]
fn lane_total(l: [f32; 8]) -> f64 {
    let h: [f64; 4] = std::array::from_fn(|j| l[j] as f64 + l[j + 4] as f64);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// Sixteen lanes folded to eight, then `lane_total`.
#[inline(always)]
fn lanes16_total(l: [f32; 16]) -> f64 {
    lane_total(std::array::from_fn(|j| l[j] + l[j + 8]))
}

/// Codes on a grid: code = clamp(round((x − shift)·inv_scale) + offset, 0, max_code), level = code − offset.
#[derive(Clone, Copy)]
struct Lattice {
    shift: f32,
    inv_scale: f32,
    offset: f32,
    max_code: f32,
}

impl Lattice {
    /// The level of `v` (its code minus the offset), as the coder rounds it.
    #[inline(always)]
    fn level(&self, v: f32) -> f32 {
        self.code(self.unrounded(v)) - self.offset
    }

    /// The code of `v` before rounding, plus ½ (so that `code` rounds to nearest by truncating).
    #[inline(always)]
    fn unrounded(&self, v: f32) -> f32 {
        (v - self.shift) * self.inv_scale + self.offset + 0.5
    }

    /// The code of an `unrounded` one: clamped to [0, max_code], truncated.
    #[inline(always)]
    fn code(&self, c: f32) -> f32 {
        let c = if c > 0.0 { c } else { 0.0 };
        let c = if c < self.max_code { c } else { self.max_code };
        // SAFETY: c lies in [0, max_code] (a NaN became 0 above), so it fits an i32; the unchecked conversion
        // vectorizes where `as` would not.
        (unsafe { c.to_int_unchecked::<i32>() }) as f32
    }
}

/// The sums of a block that do not depend on the codes.
struct Sums {
    /// Σ a, Σ a x, Σ a x².
    a: f64,
    ax: f64,
    axx: f64,
}

/// The sums that do: Σ a l, Σ a l², Σ a l x over the codes l.
#[derive(Clone, Copy)]
struct CodeSums {
    al: f64,
    all: f64,
    alx: f64,
}

impl Sums {
    /// In f64 throughout: the closed-form errors subtract these from each other, and at 8 bits what is left
    /// is a millionth of them.
    #[inline(always)]
    fn of(x: &[f32], a: &[f32]) -> Sums {
        // Four f64 lanes, added at the end: the loop vectorizes.
        let mut s = [[0f64; 4]; 3];
        in_lanes::<4>(x, a, |j, v, w| {
            let (v, w) = (v as f64, w as f64);
            s[0][j] += w;
            s[1][j] += w * v;
            s[2][j] += w * v * v;
        });
        let [a, ax, axx] = s.map(|l| (l[0] + l[2]) + (l[1] + l[3]));
        Sums { a, ax, axx }
    }

    /// The least error Σ a (scale·l + min − x)² for these codes, over (scale, min), when its scale is positive:
    /// Σ a x² − bᵀ M⁻¹ b with M = [[Σ a l², Σ a l], [Σ a l, Σ a]], b = (Σ a l x, Σ a x).
    #[inline(always)]
    fn asymmetric_error(&self, c: &CodeSums) -> Option<f64> {
        let det = self.a * c.all - c.al * c.al;
        let scale_times_det = self.a * c.alx - self.ax * c.al;
        let usable = det > 1e-12 * self.a * c.all && scale_times_det > 0.0;
        let explained = self.a * c.alx * c.alx - 2.0 * c.al * self.ax * c.alx + c.all * self.ax * self.ax;
        usable.then(|| self.axx - explained / det)
    }

    /// The (scale, min) of `asymmetric_error`.
    #[inline(always)]
    fn solve_asymmetric(&self, c: &CodeSums) -> (f32, f32) {
        let det = self.a * c.all - c.al * c.al;
        let scale = (self.a * c.alx - self.ax * c.al) / det;
        let min = (c.all * self.ax - c.al * c.alx) / det;
        (scale as f32, min as f32)
    }

    /// The least error Σ a (scale·l − x)² over the scale (`symmetric_scale`), when that scale is positive.
    #[inline(always)]
    fn symmetric_error(&self, c: &CodeSums) -> Option<f64> {
        (c.all > 0.0 && c.alx > 0.0).then(|| self.axx - c.alx * c.alx / c.all)
    }
}

/// The scale of `Sums::symmetric_error`.
#[inline(always)]
fn symmetric_scale(c: &CodeSums) -> f32 {
    (c.alx / c.all) as f32
}

/// The sums over the levels l that `lattice` gives `x`: per run of at most RUN weights, in f32 lanes, then f64.
#[inline(always)]
fn code_sums(x: &[f32], a: &[f32], lattice: Lattice) -> CodeSums {
    let mut sums = CodeSums { al: 0.0, all: 0.0, alx: 0.0 };
    for (xs, ws) in x.chunks(RUN).zip(a.chunks(RUN)) {
        let run = avx2::level_sums_run(xs, ws, lattice).unwrap_or_else(|| {
            let [al, all, alx] = level_sums_run(xs, ws, lattice);
            [lanes16_total(al), lanes16_total(all), lanes16_total(alx)]
        });
        (sums.al, sums.all, sums.alx) = (sums.al + run[0], sums.all + run[1], sums.alx + run[2]);
    }
    sums
}

/// The same sums written with AVX2 intrinsics: the search's inner loop, which LLVM would not vectorize whole.
/// The operations and their order are those of `super::level_sums_run`, so both paths agree bit for bit. The
/// kernels are compiled for AVX2 and again with AVX-512's registers (`Simd`), where the sweep spills less.
mod avx2 {
    use super::{Lattice, NSTEP, RunSweep, SETS, Sweep, never};
    use crate::math::Simd;

    /// (Σ a l, Σ a l², Σ a l x) of one run, each its lanes' `lanes16_total`, or None where the CPU lacks AVX2
    /// and FMA.
    #[inline(always)]
    pub(super) fn level_sums_run(x: &[f32], a: &[f32], lattice: Lattice) -> Option<[f64; 3]> {
        level_sums_on(Simd::best()?, x, a, lattice)
    }

    /// `level_sums_run` compiled for `simd`; None where the CPU lacks it.
    #[inline(always)]
    pub(super) fn level_sums_on(simd: Simd, x: &[f32], a: &[f32], lattice: Lattice) -> Option<[f64; 3]> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(x: &[f32], a: &[f32], lattice: Lattice) -> [f64; 3] {
                // SAFETY: this function's features are the kernel's.
                unsafe { lanes(x, a, lattice) }
            }
            #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
            unsafe fn avx512(x: &[f32], a: &[f32], lattice: Lattice) -> [f64; 3] {
                // SAFETY: this function's features include the kernel's.
                unsafe { lanes(x, a, lattice) }
            }
            if simd.here() {
                // SAFETY: the CPU has `simd`'s features (checked above).
                return Some(unsafe {
                    match simd {
                        Simd::Avx512 => avx512(x, a, lattice),
                        Simd::Avx2 => avx2(x, a, lattice),
                    }
                });
            }
        }
        None
    }

    /// `super::lane_total` of eight lanes in a register. Inlined into callers compiled for AVX2 and FMA (as are
    /// the kernels below: each is unsafe to call without them).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn register_total(folded: std::arch::x86_64::__m256) -> f64 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's features include AVX2.
        unsafe {
            let h = _mm256_add_pd(
                _mm256_cvtps_pd(_mm256_castps256_ps128(folded)),
                _mm256_cvtps_pd(_mm256_extractf128_ps(folded, 1)),
            );
            let pairs = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
            _mm_cvtsd_f64(_mm_add_sd(pairs, _mm_unpackhi_pd(pairs, pairs)))
        }
    }

    /// `Sweep::run` into an empty `run`, eight weights at a time; false (and `run` untouched) where the CPU
    /// lacks AVX2 and FMA.
    #[inline(always)]
    pub(super) fn sweep_run(x: &[f32], a: &[f32], sweep: &Sweep, run: &mut RunSweep) -> bool {
        Simd::best().is_some_and(|simd| sweep_on(simd, x, a, sweep, run))
    }

    /// `sweep_run` compiled for `simd`; false where the CPU lacks it.
    #[inline(always)]
    pub(super) fn sweep_on(simd: Simd, x: &[f32], a: &[f32], sweep: &Sweep, run: &mut RunSweep) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(x: &[f32], a: &[f32], sweep: &Sweep, run: &mut RunSweep) {
                // SAFETY: this function's features are the kernel's.
                unsafe { sweep_lanes(x, a, sweep, run) }
            }
            #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
            unsafe fn avx512(x: &[f32], a: &[f32], sweep: &Sweep, run: &mut RunSweep) {
                // SAFETY: this function's features include the kernel's.
                unsafe { sweep_lanes(x, a, sweep, run) }
            }
            if simd.here() {
                // SAFETY: the CPU has `simd`'s features (checked above).
                unsafe {
                    match simd {
                        Simd::Avx512 => avx512(x, a, sweep, run),
                        Simd::Avx2 => avx2(x, a, sweep, run),
                    }
                }
                return true;
            }
        }
        false
    }

    /// Inlined into callers compiled for AVX2 and FMA, whose features its intrinsics take.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(unsafe_op_in_unsafe_fn)]
    unsafe fn sweep_lanes(x: &[f32], a: &[f32], sweep: &Sweep, run: &mut RunSweep) {
        use std::arch::x86_64::*;
        let n = x.len().min(a.len());
        let whole = n / 8 * 8;
        let Lattice { shift, inv_scale, offset, max_code } = sweep.lattice;
        let (shift, inv_scale, offset) = (_mm256_set1_ps(shift), _mm256_set1_ps(inv_scale), _mm256_set1_ps(offset));
        let (zero, half, one, two) =
            (_mm256_setzero_ps(), _mm256_set1_ps(0.5), _mm256_set1_ps(1.0), _mm256_set1_ps(2.0));
        let (max_code, step, last) =
            (_mm256_set1_ps(max_code), _mm256_set1_ps(sweep.step), _mm256_set1_ps(NSTEP as f32));
        let sign = _mm256_set1_ps(-0.0);
        let mut first = [zero; 3];
        // The last step's missing weights are padded with weight 0 at the shift: they add zeros only, so the
        // sums are those of the portable path, which takes the tail one weight at a time.
        let mut tail = ([sweep.lattice.shift; 8], [0f32; 8]);
        tail.0[..n - whole].copy_from_slice(&x[whole..n]);
        tail.1[..n - whole].copy_from_slice(&a[whole..n]);
        let mut i = 0;
        while i < n {
            let (v, w) = if i < whole {
                // SAFETY: i + 8 <= whole <= both lengths.
                unsafe { (_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(a.as_ptr().add(i))) }
            } else {
                // SAFETY: each holds 8 f32.
                unsafe { (_mm256_loadu_ps(tail.0.as_ptr()), _mm256_loadu_ps(tail.1.as_ptr())) }
            };
            let d = _mm256_sub_ps(v, shift);
            let c = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(d, inv_scale), offset), half);
            // max/min return their second operand for a NaN: 0, as `Lattice::level` does.
            let code = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(c, zero), max_code), _MM_FROUND_TO_ZERO);
            let level = _mm256_sub_ps(code, offset);
            let wl = _mm256_mul_ps(w, level);
            first[0] = _mm256_add_ps(first[0], wl);
            first[1] = _mm256_fmadd_ps(wl, level, first[1]);
            first[2] = _mm256_fmadd_ps(wl, v, first[2]);
            let rate = _mm256_mul_ps(d, step);
            let rising = _mm256_cmp_ps(rate, zero, _CMP_GT_OQ);
            let moving = _mm256_or_ps(rising, _mm256_cmp_ps(rate, zero, _CMP_LT_OQ));
            let inverse = _mm256_div_ps(one, rate);
            let scale = _mm256_blendv_ps(_mm256_xor_ps(inverse, sign), inverse, rising);
            let direction = _mm256_blendv_ps(_mm256_set1_ps(-1.0), one, rising);
            let signed = _mm256_mul_ps(w, direction);
            let mut bins = [[0i32; 8]; 2];
            let mut changes = [[_mm_setzero_ps(); 8]; 2];
            for (j, (bins, changes)) in bins.iter_mut().zip(&mut changes).enumerate() {
                let (jf, j_before) = (_mm256_set1_ps(j as f32 + 1.0), _mm256_set1_ps(j as f32));
                let up = _mm256_add_ps(code, jf);
                let down = _mm256_sub_ps(code, jf);
                let distance =
                    _mm256_blendv_ps(_mm256_add_ps(_mm256_sub_ps(c, code), j_before), _mm256_sub_ps(up, c), rising);
                let t = _mm256_mul_ps(distance, scale);
                let k = _mm256_blendv_ps(
                    _mm256_add_ps(_mm256_round_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), one),
                    _mm256_round_ps(t, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC),
                    rising,
                );
                let possible = _mm256_blendv_ps(
                    _mm256_cmp_ps(down, zero, _CMP_GE_OQ),
                    _mm256_cmp_ps(up, max_code, _CMP_LE_OQ),
                    rising,
                );
                let comes = _mm256_and_ps(_mm256_and_ps(possible, moving), _mm256_cmp_ps(k, last, _CMP_LE_OQ));
                let never = _mm256_set1_ps(never(i / 8, j) as f32);
                let bin = _mm256_cvttps_epi32(_mm256_blendv_ps(never, _mm256_max_ps(k, one), comes));
                // SAFETY: `bins` holds 8 i32.
                unsafe { _mm256_storeu_si256(bins.as_mut_ptr().cast(), bin) };
                let from = _mm256_add_ps(_mm256_mul_ps(direction, j_before), level);
                let squares = _mm256_mul_ps(w, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(from, direction), two), one));
                let terms = [signed, squares, _mm256_mul_ps(signed, v), zero];
                *changes = transpose(terms);
            }
            for lane in 0..8 {
                for (bins, changes) in bins.iter().zip(&changes) {
                    // The bin is 1..=NSTEP or `never`'s: within BINS.
                    let moved = &mut run.moves[lane % SETS][bins[lane] as usize];
                    // SAFETY: a bin holds 4 f32.
                    unsafe {
                        _mm_storeu_ps(moved.as_mut_ptr(), _mm_add_ps(_mm_loadu_ps(moved.as_ptr()), changes[lane]))
                    };
                }
            }
            i += 8;
        }
        for (lanes, sum) in run.first.iter_mut().zip(first) {
            // SAFETY: each holds 8 f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        }
    }

    /// Four vectors of eight lanes as eight vectors of their lane's four terms.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(unsafe_op_in_unsafe_fn)]
    unsafe fn transpose(r: [std::arch::x86_64::__m256; 4]) -> [std::arch::x86_64::__m128; 8] {
        use std::arch::x86_64::*;
        let (t0, t1) = (_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));
        let (t2, t3) = (_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));
        // Lanes 0-3 in the low halves, 4-7 in the high ones.
        let o = [
            _mm256_shuffle_ps(t0, t2, 0x44),
            _mm256_shuffle_ps(t0, t2, 0xEE),
            _mm256_shuffle_ps(t1, t3, 0x44),
            _mm256_shuffle_ps(t1, t3, 0xEE),
        ];
        // Written out, not by `array::from_fn`: a closure would not take its caller's target features.
        [
            _mm256_castps256_ps128(o[0]),
            _mm256_castps256_ps128(o[1]),
            _mm256_castps256_ps128(o[2]),
            _mm256_castps256_ps128(o[3]),
            _mm256_extractf128_ps(o[0], 1),
            _mm256_extractf128_ps(o[1], 1),
            _mm256_extractf128_ps(o[2], 1),
            _mm256_extractf128_ps(o[3], 1),
        ]
    }

    /// Inlined into callers compiled for AVX2 and FMA, whose features its intrinsics take.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(unsafe_op_in_unsafe_fn)]
    unsafe fn lanes(x: &[f32], a: &[f32], lattice: Lattice) -> [f64; 3] {
        use std::arch::x86_64::*;
        let n = x.len().min(a.len());
        let whole = n / 16 * 16;
        let (shift, inv_scale) = (_mm256_set1_ps(lattice.shift), _mm256_set1_ps(lattice.inv_scale));
        let (offset, half) = (_mm256_set1_ps(lattice.offset), _mm256_set1_ps(0.5));
        let (zero, max_code) = (_mm256_setzero_ps(), _mm256_set1_ps(lattice.max_code));
        // Lanes 0-7 and 8-15 of each sum: two chains of additions.
        let mut sums = [[zero; 2]; 3];
        // The last step's missing weights are padded with weight 0 at the shift: they add zeros only, so the
        // sums are those of the portable path, which takes the tail one weight at a time.
        let mut tail = ([lattice.shift; 16], [0f32; 16]);
        tail.0[..n - whole].copy_from_slice(&x[whole..n]);
        tail.1[..n - whole].copy_from_slice(&a[whole..n]);
        let mut i = 0;
        while i < n {
            for half_lanes in 0..2 {
                let at = i + 8 * half_lanes;
                let (v, w) = if i < whole {
                    // SAFETY: at + 8 <= whole <= both lengths.
                    unsafe { (_mm256_loadu_ps(x.as_ptr().add(at)), _mm256_loadu_ps(a.as_ptr().add(at))) }
                } else {
                    // SAFETY: each holds 16 f32 and at - i is 0 or 8.
                    unsafe {
                        (_mm256_loadu_ps(tail.0.as_ptr().add(at - i)), _mm256_loadu_ps(tail.1.as_ptr().add(at - i)))
                    }
                };
                let c = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, shift), inv_scale), offset), half);
                // max/min return their second operand for a NaN: 0, as `level` does.
                let c = _mm256_min_ps(_mm256_max_ps(c, zero), max_code);
                let l = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvttps_epi32(c)), offset);
                let wl = _mm256_mul_ps(w, l);
                sums[0][half_lanes] = _mm256_add_ps(sums[0][half_lanes], wl);
                sums[1][half_lanes] = _mm256_fmadd_ps(wl, l, sums[1][half_lanes]);
                sums[2][half_lanes] = _mm256_fmadd_ps(wl, v, sums[2][half_lanes]);
            }
            i += 16;
        }
        // Not by `map`: a closure would not take its caller's target features.
        let [[a0, b0], [a1, b1], [a2, b2]] = sums;
        [
            register_total(_mm256_add_ps(a0, b0)),
            register_total(_mm256_add_ps(a1, b1)),
            register_total(_mm256_add_ps(a2, b2)),
        ]
    }
}

/// Weights the search's kernel takes at once (two AVX2 registers): tiers padded to a multiple of it keep every
/// loop of the search whole.
pub const VECTOR_STEP: usize = 16;

/// Weights are summed in f32 over runs of at most this many, then in f64: long blocks (whole rows, whole
/// tensors) keep their precision.
const RUN: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::Simd;
    use crate::quant::spec::GroupSize;

    fn noisy(n: usize, seed: f32) -> Vec<f32> {
        // Heavy-ish tails, like trained weights: a few outliers per block.
        (0..n)
            .map(|i| {
                let u = ((i as f32 * 12.9898 + seed).sin() * 43758.545).fract();
                let v = u * 2.0 - 1.0;
                0.02 * v + 0.08 * v.powi(9)
            })
            .collect()
    }

    #[test]
    fn least_squares_grids_never_lose_to_min_max_and_usually_win() {
        let x = noisy(4096, 1.0);
        let a: Vec<f32> = noisy(4096, 7.0).iter().map(|v| 0.1 + v.abs() * 20.0).collect();
        for grid in [Grid::Asymmetric, Grid::Symmetric] {
            for bits in [2u8, 3, 4, 5, 6, 8] {
                let (mut ours, mut theirs) = (0.0, 0.0);
                for (xb, ab) in x.chunks(32).zip(a.chunks(32)) {
                    let (lo, hi) = crate::math::min_max(xb);
                    let ls = fit(grid, bits, xb, ab, lo, hi);
                    let mm = rtn::fit(grid, bits, lo, hi);
                    let [e_ls, e_mm] = weighted_errors([&ls, &mm], xb, ab);
                    assert!(e_ls <= e_mm, "{grid:?} {bits}b: {e_ls} > {e_mm}");
                    (ours, theirs) = (ours + e_ls, theirs + e_mm);
                }
                // Outliers stretch min-max grids; at few bits the least-squares grid gives them up.
                if bits <= 4 {
                    assert!(ours < 0.8 * theirs, "{grid:?} {bits}b: {ours} vs {theirs}");
                }
            }
        }
    }

    #[test]
    fn the_weights_decide_which_columns_are_kept_accurate() {
        let (rows, cols) = (16, 128);
        let w = noisy(rows * cols, 3.0);
        // Even columns carry 100x the input energy of odd ones.
        let energy: Vec<f32> = (0..cols).map(|j| if j % 2 == 0 { 100.0 } else { 1.0 }).collect();
        let plan = TensorPlan {
            quantizer: super::super::QuantizerKind::LeastSquares,
            ..TensorPlan::uniform(3, GroupSize::G(32), Grid::Asymmetric)
        };
        let inputs = |m| InputStats { mean_square: Some(m), ..Default::default() };
        let error_on = |q: &QuantizedTensor, parity: usize| -> f64 {
            let d = q.dequantize().unwrap();
            (0..rows * cols).filter(|i| (i % cols) % 2 == parity).map(|i| ((w[i] - d[i]) as f64).powi(2)).sum()
        };
        let weighted = LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, inputs(&energy));
        let unweighted = LeastSquares.quantize(&w, rows, cols, &plan, &TierSource::Single, InputStats::default());
        assert!(error_on(&weighted, 0) < error_on(&unweighted, 0));
        assert!(error_on(&weighted, 1) > error_on(&unweighted, 1));
        // The stored form decodes as any grid does: codes on the block's f16 grid.
        assert_eq!(weighted.dequantize().unwrap().len(), rows * cols);
    }

    #[test]
    fn the_vector_sums_and_sweeps_are_the_portable_ones_bit_for_bit() {
        let x = noisy(203, 5.0);
        let a: Vec<f32> = noisy(203, 9.0).iter().map(|v| v.abs() * 10.0).collect();
        for lattice in [
            Lattice { shift: -0.1, inv_scale: 31.7, offset: 0.0, max_code: 15.0 },
            Lattice { shift: 0.0, inv_scale: 12.3, offset: 3.0, max_code: 6.0 },
        ] {
            for (n, simd) in
                [0, 5, 8, 16, 29, 64, 203].into_iter().flat_map(|n| Simd::supported().into_iter().map(move |s| (n, s)))
            {
                let fast = avx2::level_sums_on(simd, &x[..n], &a[..n], lattice).expect("supported");
                let portable = level_sums_run(&x[..n], &a[..n], lattice).map(lanes16_total);
                assert_eq!(fast.map(f64::to_bits), portable.map(f64::to_bits), "{simd:?}, {n} weights");
            }
        }
        let (lo, hi) = crate::math::min_max(&x);
        for sweep in [Sweep::new(lo, 0.0, 15.0, 14.0, hi - lo), Sweep::new(0.0, 3.0, 6.0, 2.5, hi.max(-lo))] {
            for (n, simd) in
                [0, 5, 8, 16, 29, 64, 203].into_iter().flat_map(|n| Simd::supported().into_iter().map(move |s| (n, s)))
            {
                let (mut fast, mut portable) = (RunSweep::EMPTY, RunSweep::EMPTY);
                assert!(avx2::sweep_on(simd, &x[..n], &a[..n], &sweep, &mut fast));
                sweep.run(&x[..n], &a[..n], &mut portable);
                assert_eq!(fast, portable, "{simd:?}, {n} weights");
            }
        }
    }

    #[test]
    fn the_sweep_gives_each_candidates_sums_as_coding_it_alone_does() {
        let x = noisy(203, 4.0);
        let a: Vec<f32> = noisy(203, 8.0).iter().map(|v| v.abs() * 10.0).collect();
        // A span a little wider than the weights': at the data's own extremes some candidates put a weight
        // exactly halfway between two codes (the widest at candidate 5), which the two ways round differently.
        let (lo, hi) = crate::math::min_max(&x);
        let (lo, hi) = (lo - 0.01 * (hi - lo), hi + 0.01 * (hi - lo));
        let amax = lo.abs().max(hi.abs());
        for bits in [2u8, 3, 4, 8] {
            let (levels, m) = (((1u32 << bits) - 1) as f32, ((1u32 << (bits - 1)) - 1) as f32);
            let asymmetric = (lo, 0.0, levels, levels + RMIN, hi - lo);
            let symmetric = (0.0, m, 2.0 * m, m - 0.5, amax);
            for (shift, offset, max_code, first, range) in [asymmetric, symmetric] {
                let swept = Sweep::new(shift, offset, max_code, first, range).code_sums(&x, &a);
                for (k, swept) in swept.iter().enumerate() {
                    let inv_scale = (first + RDELTA * k as f32) / range;
                    let alone = code_sums(&x, &a, Lattice { shift, inv_scale, offset, max_code });
                    for (s, c) in [(swept.al, alone.al), (swept.all, alone.all), (swept.alx, alone.alx)] {
                        assert!(
                            (s - c).abs() <= 1e-6 * (c.abs() + alone.all),
                            "{bits}b k={k}, shift {shift}: {s} vs {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn degenerate_blocks_fall_back_to_min_max() {
        let x = [0.25f32; 32];
        let a = [1.0f32; 32];
        let g = fit(Grid::Asymmetric, 4, &x, &a, 0.25, 0.25);
        assert_eq!(weighted_errors([&g], &x, &a), [0.0]);
        let zero_weights = [0.0f32; 32];
        let y = noisy(32, 2.0);
        let (lo, hi) = crate::math::min_max(&y);
        assert_eq!(fit(Grid::Symmetric, 3, &y, &zero_weights, lo, hi), rtn::fit(Grid::Symmetric, 3, lo, hi));
    }
}
