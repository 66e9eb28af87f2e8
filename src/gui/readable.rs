//! Numbers, names and durations as people read them.

use std::cmp::Ordering;
use std::time::Duration;

/// Four significant digits; scientific past 1e5 and below 1e-3 (where digits would only be zeros).
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() { "n/a".into() } else { format!("{x}") };
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        return format!("{x:.3e}");
    }
    let integer_digits = if magnitude < 1.0 { 1 } else { magnitude.log10().floor() as i32 + 1 };
    let decimals = (4 - integer_digits).max(0) as usize;
    let decimals =
        if magnitude < 1.0 && magnitude != 0.0 { (3 - magnitude.log10().floor() as i32) as usize } else { decimals };
    format!("{x:.decimals$}")
}

/// An axis tick: as short as its value allows ("0.1", "200", "1e-5").
pub fn tick(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        let exponent = magnitude.log10().floor();
        let mantissa = x / 10f64.powf(exponent);
        let mantissa = format!("{mantissa:.2}");
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exponent}");
    }
    let fixed = number(x);
    if fixed.contains('.') { fixed.trim_end_matches('0').trim_end_matches('.').to_string() } else { fixed }
}

/// Grid marks of a log10 axis at 1, 2 and 5 times each power of ten, to be labelled in real values (`tick`).
pub fn log_marks(input: egui_plot::GridInput) -> Vec<egui_plot::GridMark> {
    let (lo, hi) = input.bounds;
    if !(lo.is_finite() && hi.is_finite()) || hi - lo > 40.0 {
        return Vec::new();
    }
    let mut marks = Vec::new();
    for decade in lo.floor() as i32..=hi.ceil() as i32 {
        // A mark's step is the gap to the next one of its kind: egui_plot labels only marks far enough apart.
        for (m, step) in [(1.0, 1.0), (2.0, f64::log10(2.5)), (5.0, f64::log10(2.0))] {
            let value = decade as f64 + f64::log10(m);
            if (lo..=hi).contains(&value) {
                marks.push(egui_plot::GridMark { value, step_size: step });
            }
        }
    }
    marks
}

/// A relative change in percent; past +1000 % as a factor ("x1234"), which is how such a loss reads.
pub fn change_pct(pct: f64) -> String {
    if !pct.is_finite() {
        return "n/a".into();
    }
    if pct > 1000.0 {
        return format!("x{}", number(1.0 + pct / 100.0));
    }
    if pct.abs() >= 100.0 { format!("{pct:+.1}%") } else { format!("{pct:+.2}%") }
}

/// "1 min 05 s", "12 s", "0.4 s".
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        format!("{} min {:02} s", (s / 60.0).floor(), (s % 60.0).floor())
    }
}

/// Orders names with numbers in them as people count: layers.2 before layers.10.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let (na, nb) = (strip_zeros(da), strip_zeros(db));
                let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then_with(|| da.len().cmp(&db.len()));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let start = digits.iter().position(|&c| c != b'0').unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_four_significant_digits_and_go_scientific_when_huge_or_tiny() {
        assert_eq!(number(36.07712), "36.08");
        assert_eq!(number(4.25), "4.250");
        assert_eq!(number(1234.6), "1235");
        assert_eq!(number(99_999.0), "99999");
        assert_eq!(number(705_654_929.177), "7.057e8");
        assert_eq!(number(0.012345), "0.01235");
        assert_eq!(number(0.0), "0.000");
        assert_eq!(number(0.000012), "1.200e-5");
        assert_eq!(number(f64::NAN), "n/a");
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.1), "0.1");
        assert_eq!(tick(200.0), "200");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1e-5), "1e-5");
        assert_eq!(tick(2e-5), "2e-5");
        assert_eq!(tick(1e6), "1e6");
        assert_eq!(tick(0.005), "0.005");
    }

    #[test]
    fn large_losses_read_as_factors() {
        assert_eq!(change_pct(3.456), "+3.46%");
        assert_eq!(change_pct(-0.5), "-0.50%");
        assert_eq!(change_pct(110.987), "+111.0%");
        assert_eq!(change_pct(2_334_560_879.5), "x2.335e7");
        assert_eq!(change_pct(1500.0), "x16.00");
    }

    #[test]
    fn names_sort_as_people_count() {
        let mut names = vec!["layers.10.q", "layers.2.q", "layers.1.q", "embed", "layers.02.k"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["embed", "layers.1.q", "layers.2.q", "layers.02.k", "layers.10.q"]);
    }

    #[test]
    fn durations_read_in_seconds_and_minutes() {
        assert_eq!(duration(Duration::from_millis(400)), "0.4 s");
        assert_eq!(duration(Duration::from_secs(42)), "42 s");
        assert_eq!(duration(Duration::from_secs(65)), "1 min 05 s");
    }
}
