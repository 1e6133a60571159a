//! Shape-only model descriptions (`configs/models/*.yaml`): the numbers FLOP counts and layouts
//! need, for models that have no package here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::package::Manifest;

/// Decoder and video-grid sizes of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    pub name: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Width of the gated MLP (gate, up and down projections).
    pub intermediate_size: usize,
    pub vocab_size: usize,
    /// The longest sequence the model takes (the HF config's `max_position_embeddings`): longer
    /// layouts are refused before anything the size of the sequence squared is built.
    pub max_positions: usize,
    pub video: VideoGrid,
}

/// Frames per video and video tokens per frame (`grid_h x grid_w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoGrid {
    pub num_frames: usize,
    pub grid_h: usize,
    pub grid_w: usize,
}

impl ModelShape {
    pub fn from_file(path: &Path) -> Result<ModelShape> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let shape: ModelShape = serde_yaml::from_str(&text).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: format!("not a model shape description: {e}"),
        })?;
        let positive = [
            ("num_layers", shape.num_layers),
            ("hidden_size", shape.hidden_size),
            ("num_heads", shape.num_heads),
            ("num_kv_heads", shape.num_kv_heads),
            ("head_dim", shape.head_dim),
            ("intermediate_size", shape.intermediate_size),
            ("vocab_size", shape.vocab_size),
            ("max_positions", shape.max_positions),
            ("video.num_frames", shape.video.num_frames),
            ("video.grid_h", shape.video.grid_h),
            ("video.grid_w", shape.video.grid_w),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Data {
                path: path.to_path_buf(),
                msg: format!("{field} must be positive"),
            });
        }
        if !shape.num_heads.is_multiple_of(shape.num_kv_heads) {
            return Err(Error::Data {
                path: path.to_path_buf(),
                msg: format!(
                    "num_heads ({}) must be a multiple of num_kv_heads ({})",
                    shape.num_heads, shape.num_kv_heads
                ),
            });
        }
        Ok(shape)
    }

    /// The shape of a packaged model.
    pub fn from_manifest(m: &Manifest) -> ModelShape {
        ModelShape {
            name: m.name.clone(),
            num_layers: m.num_layers,
            hidden_size: m.hidden_size,
            num_heads: m.num_heads,
            num_kv_heads: m.num_kv_heads,
            head_dim: m.head_dim,
            intermediate_size: m.intermediate_size,
            vocab_size: m.vocab_size,
            max_positions: m.max_positions,
            video: VideoGrid {
                num_frames: m.video.num_frames,
                grid_h: m.video.grid_h,
                grid_w: m.video.grid_w,
            },
        }
    }

    /// Refuses a sequence longer than the model's positions.
    pub fn check_sequence_length(&self, seq_len: usize) -> Result<()> {
        if seq_len > self.max_positions {
            return Err(Error::Input(format!(
                "the layout is {seq_len} positions long; {} takes at most {} (max_positions)",
                self.name, self.max_positions
            )));
        }
        Ok(())
    }

    /// `(frames, grid_h, grid_w)`, the default of a shape-only layout.
    pub fn frames(&self) -> (usize, usize, usize) {
        (self.video.num_frames, self.video.grid_h, self.video.grid_w)
    }
}
