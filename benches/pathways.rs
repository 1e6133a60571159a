//! Criterion benchmarks of the pathway machinery: building mask schedules, compiling plans, and one
//! layer step of the tiny test package over all rows vs a plan's rows.
//!
//! `cargo bench --bench pathways`

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{Array3, Array4};
use vidflow::engine::{self, restricted_mask, LayerMask};
use vidflow::package::Package;
use vidflow::pathway::{PathwayConfig, RandomBlocking, SequenceGroups};
use vidflow::plan::Plan;
use vidflow::prompt::PromptBuilder;
use vidflow::runtime::{RuntimeOptions, Upload};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The paper's layout on SmolLM2's 30 layers: 35 + 8x12x12 + 60 + 20 = 1267 positions.
fn paper_groups() -> SequenceGroups {
    SequenceGroups::from_shape_spec("system=35,frames=8x12x12,question=60,template=20", None)
        .expect("layout")
}

fn schedules(c: &mut Criterion) {
    let groups = paper_groups();
    let config =
        PathwayConfig::from_file(&repo("configs/pathways/smollm2-135m.yaml")).expect("config");
    let mut g = c.benchmark_group("mask_schedule_30_layers_s1267");
    g.sample_size(10);
    g.bench_function("pathway_config", |b| {
        b.iter(|| config.resolve(&groups, 30).expect("resolve"))
    });
    let random = RandomBlocking::new(0.5, 0).expect("ratio");
    g.bench_function("random_0.5", |b| b.iter(|| random.schedule(&groups, 30)));
    g.finish();

    let schedule = config.resolve(&groups, 30).expect("resolve");
    let mut g = c.benchmark_group("plan_compile_30_layers_s1267");
    g.sample_size(10);
    g.bench_function("pathway_config", |b| b.iter(|| Plan::compile(&schedule)));
    let plan = Plan::compile(&schedule);
    let rows = &plan.layers[29].rows;
    g.bench_function("restricted_mask_last_layer", |b| {
        b.iter(|| restricted_mask(schedule.layer(29), rows))
    });
    g.bench_function("additive_mask_all_rows", |b| {
        b.iter(|| schedule.layer(29).additive())
    });
    g.finish();
}

fn layer_step(c: &mut Criterion) {
    let opts = RuntimeOptions {
        threads: 1,
        ..RuntimeOptions::default()
    };
    let pkg = Package::open(&repo("tests/fixtures/tiny"), &opts).expect("open the tiny package");
    let m = &pkg.manifest;
    let layout = PromptBuilder::new(m, pkg.dir())
        .expect("tokenizer")
        .layout(
            "What does the man do after the dog opens the door?",
            &["It moves left", "Nothing happens"],
            Some(0),
        )
        .expect("layout");
    let groups = SequenceGroups::from_prompt(&layout);
    let s = layout.seq_len;
    let schedule = PathwayConfig::from_file(&repo("configs/pathways/tiny.yaml"))
        .expect("config")
        .resolve(&groups, m.num_layers)
        .expect("resolve");
    let plan = Plan::compile(&schedule);
    let last = m.num_layers - 1;
    let positions = engine::Positions::new(&pkg.manifest, Some(layout.placeholder_index), s)
        .expect("positions");
    let rotary = engine::rotary(&pkg, &positions).expect("rotary");
    let hidden = Array3::from_shape_fn((1, s, m.hidden_size), |(_, i, j)| {
        ((i * 31 + j * 7) % 17) as f32 / 17.0 - 0.5
    });
    let data = pkg.data();
    let no_past = Array4::<f32>::zeros((1, m.num_kv_heads, 0, m.head_dim));
    let no_past = data
        .upload(no_past.view().into_dyn(), Upload::State)
        .expect("upload");
    let hidden = data
        .upload(hidden.view().into_dyn(), Upload::State)
        .expect("upload");
    let uniform = vidflow::mask::MaskedRows::Uniform;

    let mut g = c.benchmark_group(format!("tiny_layer_step_s{s}"));
    let full_mask = schedule.layer(last).additive();
    let full_mask = LayerMask::upload(&pkg, full_mask.view(), uniform).expect("mask");
    g.bench_function("all_rows", |b| {
        b.iter(|| {
            engine::run_layer(
                &pkg,
                last,
                &hidden,
                &rotary.cos,
                &rotary.sin,
                &no_past,
                &no_past,
                &full_mask,
                false,
            )
            .expect("layer")
        })
    });
    let rows = &plan.layers[last].rows;
    let h = data.gather(&hidden, 1, rows).expect("gather");
    let rot = rotary.rows(&pkg, rows).expect("gather");
    let mask = restricted_mask(schedule.layer(last), rows);
    let mask = LayerMask::upload(&pkg, mask.view(), uniform).expect("mask");
    g.bench_function(format!("plan_rows_{}", rows.len()), |b| {
        b.iter(|| {
            engine::run_layer(
                &pkg, last, &h, &rot.cos, &rot.sin, &no_past, &no_past, &mask, false,
            )
            .expect("layer")
        })
    });
    g.finish();
}

criterion_group!(benches, schedules, layer_step);
criterion_main!(benches);
