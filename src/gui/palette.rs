//! Colours. Bit widths have one fixed palette everywhere (tiers, the heatmap, the tensor view, threshold
//! lines), never stretched to the data: 4 bits has the same colour in every run. Continuous metrics use viridis
//! with their legend in real values.

use eframe::egui::Color32;
use nash_swarm::quant::tiers::ALLOWED_BITS;

/// One colour per allowed width (2, 3, 4, 5, 6, 8, 16), from red (few bits) to blue (many): ColorBrewer RdYlBu.
const BIT_COLORS: [[u8; 3]; 7] =
    [[215, 48, 39], [244, 109, 67], [253, 174, 97], [254, 224, 144], [171, 217, 233], [116, 173, 209], [69, 117, 180]];

/// The colour of a bit width; a mean between two widths (a tensor's average) sits between their colours.
pub fn bits(bits: f32) -> Color32 {
    let widths = ALLOWED_BITS.map(f32::from);
    let bits = bits.clamp(widths[0], widths[widths.len() - 1]);
    let i = widths.windows(2).position(|w| bits <= w[1]).unwrap_or(widths.len() - 2);
    let t = (bits - widths[i]) / (widths[i + 1] - widths[i]);
    let mix = |k: usize| (BIT_COLORS[i][k] as f32 + (BIT_COLORS[i + 1][k] as f32 - BIT_COLORS[i][k] as f32) * t) as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}

/// Differences of bits: blue where the first has fewer, red where it has more, white where they agree; fixed at
/// ±`BITS_DIFFERENCE_SPAN` so runs compare alike.
pub fn bits_difference(delta: f32) -> Color32 {
    let t = (delta / BITS_DIFFERENCE_SPAN).clamp(-1.0, 1.0);
    let fade = |c: u8| (255.0 + (c as f32 - 255.0) * t.abs()) as u8;
    let [r, g, b] = if t < 0.0 { [69, 117, 180] } else { [215, 48, 39] };
    Color32::from_rgb(fade(r), fade(g), fade(b))
}

pub const BITS_DIFFERENCE_SPAN: f32 = 4.0;

/// Viridis, sampled at five stops and interpolated.
pub fn viridis(t: f32) -> Color32 {
    const STOPS: [[f32; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let (i, f) = ((x.floor() as usize).min(3), x - x.floor().min(3.0));
    let c = |k: usize| STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f;
    Color32::from_rgb(c(0) as u8, c(1) as u8, c(2) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_has_its_own_colour_and_means_fall_between() {
        let colours: Vec<Color32> = ALLOWED_BITS.iter().map(|&b| bits(b as f32)).collect();
        for (i, c) in colours.iter().enumerate() {
            assert_eq!(c.to_array()[..3], BIT_COLORS[i], "width {}", ALLOWED_BITS[i]);
            assert!(colours[i + 1..].iter().all(|d| d != c), "width {} shares its colour", ALLOWED_BITS[i]);
        }
        // 4.5 bits lies between 4 and 5; beyond the range stays at the ends.
        let between = bits(4.5).to_array();
        for k in 0..3 {
            let (a, b) = (BIT_COLORS[2][k].min(BIT_COLORS[3][k]), BIT_COLORS[2][k].max(BIT_COLORS[3][k]));
            assert!((a..=b).contains(&between[k]));
        }
        assert_eq!(bits(1.0), bits(2.0));
        assert_eq!(bits(32.0), bits(16.0));
    }
}
