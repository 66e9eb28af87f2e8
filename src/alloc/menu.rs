//! The strategies every player chooses from.

use crate::quant::spec::{Grid, GroupSize, QuantizerKind, TensorPlan};
use crate::quant::tiers::{Granularity, Tier};

/// Group sizes of the uniform strategies: smaller groups fit outliers better and cost more parameter bits
/// (an asymmetric grid's two f16 per group: 1, 0.5, 0.25 and 0.125 bits per weight).
pub const MENU_GROUPS: [usize; 4] = [32, 64, 128, 256];
/// Group size of the mixed-tier strategies.
const MIX_GROUP: usize = 128;

/// The default menu: uniform 2..8 bits at every group size of `MENU_GROUPS`, and group-level mixes of tiers,
/// all on `grid` quantized by `quantizer`.
pub fn default_menu(grid: Grid, quantizer: QuantizerKind) -> Vec<TensorPlan> {
    let mut menu: Vec<TensorPlan> = Vec::new();
    for g in MENU_GROUPS {
        menu.extend([2, 3, 4, 5, 6, 8].iter().map(|&b| TensorPlan::uniform(b, GroupSize::G(g), grid)));
    }
    let mixes: [&[(f64, u8)]; 7] = [
        &[(0.1, 8), (0.9, 2)],
        &[(0.25, 4), (0.75, 2)],
        &[(0.1, 8), (0.2, 4), (0.7, 2)],
        &[(0.1, 8), (0.9, 3)],
        &[(0.5, 4), (0.5, 3)],
        &[(0.1, 8), (0.9, 4)],
        &[(0.5, 5), (0.5, 4)],
    ];
    for mix in mixes {
        let tiers = mix.iter().map(|&(share, bits)| Tier { share, bits }).collect();
        let (granularity, group_size) = (Granularity::Group(MIX_GROUP), GroupSize::G(MIX_GROUP));
        menu.push(TensorPlan { tiers, granularity, group_size, grid, quantizer: QuantizerKind::Rtn });
    }
    menu.into_iter().map(|plan| plan.with_quantizer(quantizer)).collect()
}
