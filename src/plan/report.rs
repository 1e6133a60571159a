//! Per-layer accounting of a plan against the full dense run: rows, keys, edges, FLOPs.

use serde::Serialize;

use super::compile::Plan;
use super::cost::FlopModel;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    /// 1-based, as configs number layers.
    pub layer: usize,
    pub rows_computed: usize,
    pub rows_needed: usize,
    pub keys_read: usize,
    pub open_edges: usize,
    pub total_edges: usize,
    pub flops: u64,
    pub full_flops: u64,
}

/// A plan's cost next to the full run (every row, plain causal mask).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanReport {
    pub model: String,
    pub pathways: String,
    pub seq_len: usize,
    /// Layers that run; `model_layers` when the plan does not exit early.
    pub num_layers: usize,
    pub model_layers: usize,
    pub layers: Vec<LayerReport>,
    pub rows_computed: usize,
    pub full_rows: usize,
    pub open_edges: usize,
    pub total_edges: usize,
    /// Decoder layers plus the head, as executed by the plan.
    pub flops: u64,
    pub full_flops: u64,
    /// `full_flops / flops`.
    pub predicted_speedup: f64,
}

impl PlanReport {
    pub fn new(model: &str, pathways: &str, plan: &Plan, cost: &FlopModel) -> PlanReport {
        let s = plan.seq_len;
        let total_edges = s * (s + 1) / 2;
        let full_layer = cost.layer(s, s).total();
        let head = cost.head(plan.outputs.len());
        let layers: Vec<LayerReport> = plan
            .layers
            .iter()
            .enumerate()
            .map(|(l, lp)| LayerReport {
                layer: l + 1,
                rows_computed: lp.rows.len(),
                rows_needed: lp.needed.len(),
                keys_read: lp.keys_read,
                open_edges: lp.open_edges,
                total_edges,
                flops: cost.layer(lp.rows.len(), lp.rows.len()).total(),
                full_flops: full_layer,
            })
            .collect();
        let flops = layers.iter().map(|l| l.flops).sum::<u64>() + head;
        // The full run is every layer of the model, also when the plan exits early.
        let full_flops = full_layer * plan.model_layers as u64 + head;
        PlanReport {
            model: model.to_string(),
            pathways: pathways.to_string(),
            seq_len: s,
            num_layers: layers.len(),
            model_layers: plan.model_layers,
            rows_computed: plan.rows_computed(),
            full_rows: s * plan.model_layers,
            open_edges: plan.open_edges(),
            total_edges: total_edges * plan.model_layers,
            predicted_speedup: full_flops as f64 / flops as f64,
            flops,
            full_flops,
            layers,
        }
    }

    /// The human-readable table `vidflow plan` prints.
    pub fn table(&self) -> String {
        let exit = if self.num_layers < self.model_layers {
            format!(
                " (answer read after layer {}; later layers skipped)",
                self.num_layers
            )
        } else {
            String::new()
        };
        let mut out = format!(
            "model {}   pathways {}   S = {} positions, {} layers{exit}\n",
            self.model, self.pathways, self.seq_len, self.model_layers
        );
        out += &format!(
            "{:>5} {:>7} {:>7} {:>9} {:>25} {:>7} {:>10} {:>10} {:>6}\n",
            "layer",
            "rows",
            "needed",
            "keys read",
            "open / total edges",
            "open %",
            "GFLOPs",
            "full",
            "share"
        );
        for l in &self.layers {
            out += &format!(
                "{:>5} {:>7} {:>7} {:>9} {:>25} {:>6.1}% {:>10.3} {:>10.3} {:>5.1}%\n",
                l.layer,
                l.rows_computed,
                l.rows_needed,
                l.keys_read,
                format!("{} / {}", l.open_edges, l.total_edges),
                percent(l.open_edges as f64, l.total_edges as f64),
                giga(l.flops),
                giga(l.full_flops),
                percent(l.flops as f64, l.full_flops as f64),
            );
        }
        out += &format!(
            "total rows {} of {} ({:.1}%), open edges {} of {} ({:.1}%), {:.3} of {:.3} GFLOPs \
             (decoder + head) -> predicted speedup {:.3}x\n",
            self.rows_computed,
            self.full_rows,
            percent(self.rows_computed as f64, self.full_rows as f64),
            self.open_edges,
            self.total_edges,
            percent(self.open_edges as f64, self.total_edges as f64),
            giga(self.flops),
            giga(self.full_flops),
            self.predicted_speedup
        );
        out
    }
}

fn giga(f: u64) -> f64 {
    f as f64 / 1e9
}

fn percent(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        100.0 * a / b
    }
}
