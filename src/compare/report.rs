//! Comparison reports as Markdown and CSV.

use super::Row;

pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| method | configuration | payload bpw | true bpw | size (MB) | PPL | dPPL | seed loss | dseed loss | KLD mean | KLD p99 | top-1 agree |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.3} | {:+.2}% | {:.4} | {:+.2}% | {:.4} | {:.4} | {:.1}% |\n",
            r.method,
            r.configuration,
            r.payload_bpw,
            r.true_bpw,
            r.size_bytes as f64 / 1e6,
            r.ppl,
            r.delta_ppl_pct,
            r.seed_loss,
            r.delta_seed_loss_pct,
            r.kld_mean,
            r.kld_p99,
            100.0 * r.top1_agreement
        );
    }
    s
}

pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "method,configuration,payload_bpw,true_bpw,size_bytes,ppl,delta_ppl_pct,seed_loss,delta_seed_loss_pct,kld_mean,kld_p99,top1_agreement,quantize_seconds\n",
    );
    for r in rows {
        s += &format!(
            "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{}\n",
            r.method,
            r.configuration.replace('"', "'"),
            r.payload_bpw,
            r.true_bpw,
            r.size_bytes,
            r.ppl,
            r.delta_ppl_pct,
            r.seed_loss,
            r.delta_seed_loss_pct,
            r.kld_mean,
            r.kld_p99,
            r.top1_agreement,
            r.quantize_seconds
        );
    }
    s
}

/// A report of ours (Markdown or CSV), which `--report` may replace without `--force`.
pub fn is_report(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 24];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut start)) else { return false };
    let start = &start[..n];
    start.starts_with(b"| method | configuration") || start.starts_with(b"method,configuration,")
}
