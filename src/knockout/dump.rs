//! Dumps the exact model inputs of each sample, so that an independent implementation (the
//! PyTorch reference in `export/vidflow_export/reference_knockout.py`) runs on the same pixels and
//! tokens: `<dir>/<k>.safetensors` (`pixel_values [F,3,H,W]` f32, `input_ids [T]` i64, with the
//! single video placeholder, and `inputs_embeds [S,D]` f32, the spliced input embeddings the
//! decoder starts from, for a reference without the package's vision tower) and `<dir>/<k>.json`
//! (sample id, task, answer, placeholder index, number of video tokens, sequence length, option
//! label tokens, every token group's positions).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;

use crate::answer::{embed, Sample, SampleInputs};
use crate::error::{Error, Result};
use crate::package::Package;

#[derive(Serialize)]
struct DumpMeta<'a> {
    index: usize,
    sample_id: &'a str,
    task: Option<&'a str>,
    answer: Option<usize>,
    placeholder_index: usize,
    num_video_tokens: usize,
    num_frames: usize,
    seq_len: usize,
    option_token_ids: &'a [i64],
    groups: BTreeMap<String, Vec<usize>>,
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes sample `index`'s inputs into `dir` (created if needed); runs the package's vision and
/// embedding graphs once for `inputs_embeds`.
pub fn dump_inputs(
    pkg: &Package,
    dir: &Path,
    index: usize,
    sample: &Sample,
    inputs: &SampleInputs,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (embeds, _) = embed(pkg, inputs)?;
    let embeds = pkg
        .data()
        .download(&embeds)?
        .index_axis_move(ndarray::Axis(0), 0);
    let layout = &inputs.layout;
    let stem = dir.join(format!("{index:05}"));
    let tensors_path = stem.with_extension("safetensors");
    let bad = |e: safetensors::SafeTensorError| Error::Data {
        path: tensors_path.clone(),
        msg: e.to_string(),
    };
    let pixels: Vec<f32> = inputs.pixels.iter().copied().collect();
    let pixel_bytes = bytes_f32(&pixels);
    let id_bytes = bytes_i64(&layout.input_ids);
    let embed_shape = embeds.shape().to_vec();
    let embed_values: Vec<f32> = embeds.iter().copied().collect();
    let embed_bytes = bytes_f32(&embed_values);
    let tensors = vec![
        (
            "input_ids",
            TensorView::new(Dtype::I64, vec![layout.input_ids.len()], &id_bytes).map_err(bad)?,
        ),
        (
            "inputs_embeds",
            TensorView::new(Dtype::F32, embed_shape, &embed_bytes).map_err(bad)?,
        ),
        (
            "pixel_values",
            TensorView::new(Dtype::F32, inputs.pixels.shape().to_vec(), &pixel_bytes)
                .map_err(bad)?,
        ),
    ];
    let bytes = safetensors::serialize(tensors, None).map_err(bad)?;
    std::fs::write(&tensors_path, bytes).map_err(|e| Error::io(&tensors_path, e))?;

    let mut groups = BTreeMap::new();
    for name in layout.group_names() {
        groups.insert(name.clone(), layout.group(&name)?.to_vec());
    }
    let meta = DumpMeta {
        index,
        sample_id: &sample.id,
        task: sample.task.as_deref(),
        answer: layout.answer,
        placeholder_index: layout.placeholder_index,
        num_video_tokens: layout.num_video_tokens(),
        num_frames: layout.num_frames,
        seq_len: layout.seq_len,
        option_token_ids: &layout.option_token_ids,
        groups,
    };
    let meta_path = stem.with_extension("json");
    let text = serde_json::to_string_pretty(&meta).map_err(|e| Error::Data {
        path: meta_path.clone(),
        msg: e.to_string(),
    })?;
    std::fs::write(&meta_path, text).map_err(|e| Error::io(&meta_path, e))
}
