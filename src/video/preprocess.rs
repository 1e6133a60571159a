//! RGB frames -> `pixel_values [F,3,H,W]` as the manifest's `VideoSpec` describes.

use image::imageops::{self, FilterType};
use image::RgbImage;
use ndarray::Array4;

use crate::error::{Error, Result};
use crate::package::manifest::{ResizeFilter, ResizeMode, VideoSpec};

/// The `image` filter for a manifest filter name. `bicubic` is Catmull-Rom (a = -0.5), the kernel
/// PIL uses for BICUBIC; `image` widens every kernel when downscaling, like PIL's antialiasing, so
/// results are close to (not bit-identical with) HF processors that resize with PIL.
pub fn filter_type(filter: ResizeFilter) -> FilterType {
    match filter {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Bilinear => FilterType::Triangle,
        ResizeFilter::Bicubic => FilterType::CatmullRom,
    }
}

fn check_spec(spec: &VideoSpec) -> Result<()> {
    if spec.frame_height == 0 || spec.frame_width == 0 {
        return Err(Error::Input(format!(
            "video frame size {}x{} (width x height) must be positive",
            spec.frame_width, spec.frame_height
        )));
    }
    if let Some(c) = spec
        .image_std
        .iter()
        .position(|s| *s == 0.0 || !s.is_finite())
    {
        return Err(Error::Input(format!(
            "video image_std[{c}] is {}, expected a finite non-zero value",
            spec.image_std[c]
        )));
    }
    Ok(())
}

/// Size after the resize step, before any crop, for a `width x height` frame.
///
/// `shortest_edge_crop` scales so the frame covers the target, keeping aspect ratio: the binding
/// edge becomes exactly the target and the other is floored (`int(size * long / short)` like HF's
/// CLIP processor for square targets), then [`resize_frame`] centre-crops with the offset
/// `(resized - target) / 2` floored.
pub fn resized_size(width: u32, height: u32, spec: &VideoSpec) -> (u32, u32) {
    let (tw, th) = (spec.frame_width as u64, spec.frame_height as u64);
    let (w, h) = (width.max(1) as u64, height.max(1) as u64);
    match spec.resize_mode {
        ResizeMode::Stretch => (tw as u32, th as u32),
        ResizeMode::ShortestEdgeCrop => {
            if w * th >= h * tw {
                // Relatively wider than the target: the height binds.
                (((w * th) / h).max(tw) as u32, th as u32)
            } else {
                (tw as u32, ((h * tw) / w).max(th) as u32)
            }
        }
    }
}

/// Resizes (and for `shortest_edge_crop`, centre-crops) one RGB frame to `frame_width x
/// frame_height` with the manifest's filter. Kept apart from normalisation so it can be inspected.
pub fn resize_frame(frame: &RgbImage, spec: &VideoSpec) -> Result<RgbImage> {
    check_spec(spec)?;
    if frame.width() == 0 || frame.height() == 0 {
        return Err(Error::Input("video frame has zero width or height".into()));
    }
    let (rw, rh) = resized_size(frame.width(), frame.height(), spec);
    let resized = if (rw, rh) == frame.dimensions() {
        frame.clone()
    } else {
        imageops::resize(frame, rw, rh, filter_type(spec.resize_filter))
    };
    let (tw, th) = (spec.frame_width as u32, spec.frame_height as u32);
    if (rw, rh) == (tw, th) {
        return Ok(resized);
    }
    let (left, top) = ((rw - tw) / 2, (rh - th) / 2);
    Ok(imageops::crop_imm(&resized, left, top, tw, th).to_image())
}

/// Frames -> `pixel_values [F,3,H,W]`: resize/crop, then `x * rescale_factor`, then
/// `(x - mean[c]) / std[c]`, channel-first (the layout of HF image processors).
pub fn preprocess(frames: &[RgbImage], spec: &VideoSpec) -> Result<Array4<f32>> {
    check_spec(spec)?;
    let (h, w) = (spec.frame_height, spec.frame_width);
    let mut out = Array4::<f32>::zeros((frames.len(), 3, h, w));
    for (f, frame) in frames.iter().enumerate() {
        let img = resize_frame(frame, spec)?;
        for (x, y, px) in img.enumerate_pixels() {
            for c in 0..3 {
                let v = px.0[c] as f32 * spec.rescale_factor;
                out[[f, c, y as usize, x as usize]] = (v - spec.image_mean[c]) / spec.image_std[c];
            }
        }
    }
    Ok(out)
}
