//! The strategies every player chooses from.

use crate::quant::spec::{Grid, GroupSize, TensorPlan};
use crate::quant::tiers::{Granularity, Tier};

/// The default menu: uniform 2..8 bits and group-level mixes, all with blocks of `group_size`.
pub fn default_menu(group_size: GroupSize, grid: Grid) -> Vec<TensorPlan> {
    let mut menu: Vec<TensorPlan> =
        [2, 3, 4, 5, 6, 8].iter().map(|&b| TensorPlan::uniform(b, group_size, grid)).collect();
    let granularity = match group_size {
        GroupSize::G(g) => Granularity::Group(g),
        _ => Granularity::Channel,
    };
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
        menu.push(TensorPlan { tiers, granularity, group_size, grid });
    }
    menu
}
