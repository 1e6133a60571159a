//! Heatmap grids of attention maps as PNG and SVG: one row per layer, one column per frame, one
//! panel per variant (baseline, knockout). Each row shares one colour scale across panels, so a
//! layer's baseline and knockout compare directly; the row's maximum is printed at its end.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::maps::AttentionMap;
use crate::error::{Error, Result};
use crate::report::plot::{register_font, FONT};

/// One panel: a title and its maps, one per layer (the same layers in every panel).
pub struct Panel {
    pub title: String,
    pub maps: Vec<AttentionMap>,
}

const CELL: i32 = 72;
const GAP: i32 = 28;
const LEFT: i32 = 56;
const RIGHT: i32 = 90;
const TOP: i32 = 70;
const BOTTOM: i32 = 16;

/// Viridis, sampled at five points and interpolated linearly.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn size(panels: &[Panel]) -> (u32, u32) {
    let frames = panels
        .first()
        .and_then(|p| p.maps.first())
        .map_or(1, |m| m.frames.len()) as i32;
    let rows = panels.first().map_or(1, |p| p.maps.len()) as i32;
    let w = LEFT + panels.len() as i32 * (frames * CELL + GAP) - GAP + RIGHT;
    let h = TOP + rows * CELL + BOTTOM;
    (w as u32, h as u32)
}

/// Writes `<stem>.png` and `<stem>.svg`.
pub fn write_heatmaps(stem: &Path, title: &str, panels: &[Panel]) -> Result<(PathBuf, PathBuf)> {
    register_font();
    let bad = |p: &Path, e: &dyn std::fmt::Display| Error::Data {
        path: p.to_path_buf(),
        msg: format!("cannot draw the heatmaps: {e}"),
    };
    let layers: Vec<usize> = panels
        .first()
        .map(|p| p.maps.iter().map(|m| m.layer).collect())
        .unwrap_or_default();
    if panels
        .iter()
        .any(|p| p.maps.iter().map(|m| m.layer).collect::<Vec<_>>() != layers)
    {
        return Err(Error::Input(
            "heatmap panels must show the same layers".into(),
        ));
    }
    let (w, h) = size(panels);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root, title, panels).map_err(|e| bad(&png, &e))?;
        root.present().map_err(|e| bad(&png, &e))?;
    }
    image::RgbImage::from_raw(w, h, pixels)
        .expect("buffer of the image's size")
        .save_with_format(&png, image::ImageFormat::Png)
        .map_err(|e| bad(&png, &e))?;
    {
        let root = SVGBackend::new(&svg, (w, h)).into_drawing_area();
        draw(&root, title, panels).map_err(|e| bad(&svg, &e))?;
        root.present().map_err(|e| bad(&svg, &e))?;
    }
    Ok((png, svg))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        title.to_string(),
        (LEFT, 8),
        (FONT, 18).into_font(),
    ))?;
    let Some(first) = panels.first() else {
        return Ok(());
    };
    let frames = first.maps.first().map_or(0, |m| m.frames.len()) as i32;
    let small = (FONT, 13).into_font();
    for (r, _) in first.maps.iter().enumerate() {
        let row_max = panels.iter().map(|p| p.maps[r].max()).fold(0.0, f64::max);
        let y0 = TOP + r as i32 * CELL;
        root.draw(&Text::new(
            format!("L{}", first.maps[r].layer + 1),
            (8, y0 + CELL / 2 - 7),
            small.clone(),
        ))?;
        for (pi, panel) in panels.iter().enumerate() {
            let x_panel = LEFT + pi as i32 * (frames * CELL + GAP);
            if r == 0 {
                root.draw(&Text::new(
                    panel.title.clone(),
                    (x_panel, TOP - 40),
                    (FONT, 14).into_font(),
                ))?;
                for f in 0..frames {
                    root.draw(&Text::new(
                        format!("frame {}", f + 1),
                        (x_panel + f * CELL + 8, TOP - 20),
                        small.clone(),
                    ))?;
                }
            }
            for (f, grid) in panel.maps[r].frames.iter().enumerate() {
                let gh = grid.len().max(1) as i32;
                let gw = grid.first().map_or(1, |row| row.len().max(1)) as i32;
                let x0 = x_panel + f as i32 * CELL;
                for (i, row) in grid.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        let t = if row_max > 0.0 { v / row_max } else { 0.0 };
                        let (i, j) = (i as i32, j as i32);
                        let a = (x0 + j * (CELL - 2) / gw, y0 + i * (CELL - 2) / gh);
                        let b = (
                            x0 + (j + 1) * (CELL - 2) / gw,
                            y0 + (i + 1) * (CELL - 2) / gh,
                        );
                        root.draw(&Rectangle::new([a, b], viridis(t).filled()))?;
                    }
                }
            }
        }
        let x_end = LEFT + panels.len() as i32 * (frames * CELL + GAP) - GAP + 6;
        root.draw(&Text::new(
            format!("max {row_max:.2e}"),
            (x_end, y0 + CELL / 2 - 7),
            small.clone(),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }
}
