//! `vidflow info PACKAGE`

use std::path::PathBuf;

use vidflow::package::Package;

use super::runtime_args::RuntimeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory (contains model.yaml).
    package: PathBuf,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pkg = Package::open(&args.package, &args.runtime.options()?)?;
    // Opening checks the attention-weights variants lazily; `info` says they all match, so it
    // checks them here.
    for l in 0..pkg.num_layers() {
        pkg.layer_attn(l)?;
    }
    // A dynamic vision graph's token count per frame shows only when it runs: one blank frame (one
    // temporal group) shows whether it is the manifest's grid_h x grid_w. A graph traced at the
    // manifest's frame count (its token count fixed) gets every frame.
    let v = &pkg.manifest.video;
    let frames = match pkg.vision.outputs().first().map(|p| p.shape[0]) {
        Some(n) if n > 0 => v.input_frames(),
        _ => v.frames_per_group,
    };
    let frame = ndarray::Array4::<f32>::zeros((frames, 3, v.frame_height, v.frame_width));
    vidflow::engine::encode_video(&pkg, frame.view()).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the vision graph ran on {frames} blank frames of {}x{}: video.num_frames {} x \
             {} decoded frames per group)",
            v.frame_height,
            v.frame_width,
            v.num_frames,
            v.frames_per_group
        )
    })?;
    let m = &pkg.manifest;
    let v = &m.video;
    println!("package      {}", args.package.display());
    println!("name         {}", m.name);
    println!(
        "family       {}   dtype {}",
        yaml_name(&m.family),
        yaml_name(&m.dtype)
    );
    println!(
        "decoder      {} layers, hidden {}, heads {} (kv {}), head dim {}, rope dim {}, mlp {}",
        m.num_layers,
        m.hidden_size,
        m.num_heads,
        m.num_kv_heads,
        m.head_dim,
        m.rope_dim,
        m.intermediate_size
    );
    println!(
        "positions    at most {} per sequence, video tokens included (max_positions)",
        m.max_positions
    );
    println!("vocabulary   {} tokens ({})", m.vocab_size, m.tokenizer);
    println!(
        "video        {} frames of {}x{} ({}, {}), {}x{} tokens per frame = {} video tokens",
        v.num_frames,
        v.frame_height,
        v.frame_width,
        yaml_name(&v.resize_mode),
        yaml_name(&v.resize_filter),
        v.grid_h,
        v.grid_w,
        v.num_video_tokens()
    );
    if let Some(r) = &m.mrope {
        println!(
            "m-rope       a frame is a temporal group of {} decoded frames ({} decoded); {} s \
             between groups when the video's rate is unknown, x {} tokens per second; sections \
             {:?}",
            r.temporal_patch_size,
            v.input_frames(),
            r.seconds_per_group,
            r.tokens_per_second,
            r.sections
        );
    }
    if v.trailing_tokens > 0 {
        println!(
            "             + {} trailing video tokens after the last frame (group video.sep)",
            v.trailing_tokens
        );
    }
    println!(
        "prompt       options {}, answer prefix {:?}",
        m.prompt.option_labels.join(""),
        m.prompt.answer_prefix
    );
    if m.prompt.per_frame() {
        let p = &m.prompt;
        println!(
            "             video written per frame: {:?} joined by {:?} (text between frames: \
             groups video and video.sep)",
            format!(
                "{}{}{}",
                p.frame_prefix, p.video_placeholder, p.frame_suffix
            ),
            p.frame_separator
        );
    }
    println!(
        "graphs       vision, embed, rope, {} layers (+ attention variants), 3 heads: all match the manifest",
        pkg.layers.len()
    );
    for (i, line) in pkg.prompt_check.summary(m).iter().enumerate() {
        let label = if i == 0 { "deep check" } else { "" };
        println!("{label:<12} {line}");
    }
    Ok(())
}

/// The name a manifest enum has in model.yaml.
fn yaml_name<T: serde::Serialize>(v: &T) -> String {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .trim()
        .to_string()
}
