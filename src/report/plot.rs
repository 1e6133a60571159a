//! Line plots as PNG and SVG, like the paper's knockout figures: one line per series with a
//! shaded 95% band, a horizontal reference line, legend in the lower right.
//!
//! Text in PNGs is drawn with DejaVu Sans embedded in the binary (no system fonts needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// A point of a line: `(x, y, optional (low, high) band around y)`.
pub type Point = (f64, f64, Option<(f64, f64)>);

/// One line, its points drawn in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A line plot's content.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    /// A horizontal line (0 for %change plots).
    pub hline: Option<f64>,
    pub series: Vec<Series>,
}

const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;
pub(crate) const FONT: &str = "sans-serif";

/// Seaborn's Set1 colours, blue first.
const PALETTE: [RGBColor; 8] = [
    RGBColor(55, 126, 184),
    RGBColor(228, 26, 28),
    RGBColor(77, 175, 74),
    RGBColor(152, 78, 163),
    RGBColor(255, 127, 0),
    RGBColor(166, 86, 40),
    RGBColor(247, 129, 191),
    RGBColor(153, 153, 153),
];

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; failure would be a packaging bug.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        msg: format!("cannot draw the plot: {e}"),
    }
}

/// Writes `<stem>.png` and `<stem>.svg`; returns their paths.
pub fn write_line_plot(stem: &Path, plot: &LinePlot) -> Result<(PathBuf, PathBuf)> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, plot).map_err(|e| plot_err(&png, e))?;
        root.present().map_err(|e| plot_err(&png, e))?;
    }
    let image =
        image::RgbImage::from_raw(WIDTH, HEIGHT, pixels).expect("buffer of the plot's size");
    image
        .save_with_format(&png, image::ImageFormat::Png)
        .map_err(|e| plot_err(&png, e))?;
    {
        let root = SVGBackend::new(&svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, plot).map_err(|e| plot_err(&svg, e))?;
        root.present().map_err(|e| plot_err(&svg, e))?;
    }
    Ok((png, svg))
}

fn y_range(plot: &LinePlot) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    for s in &plot.series {
        for &(_, y, band) in &s.points {
            see(y);
            if let Some((a, b)) = band {
                see(a);
                see(b);
            }
        }
    }
    if let Some(h) = plot.hline {
        see(h);
    }
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    plot: &LinePlot,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (y0, y1) = y_range(plot);
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(plot.x_range.0..plot.x_range.1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .draw()?;
    for (i, s) in plot.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let banded: Vec<(f64, f64, f64)> = s
            .points
            .iter()
            .filter_map(|&(x, _, b)| b.map(|(lo, hi)| (x, lo, hi)))
            .collect();
        if banded.len() > 1 {
            let mut outline: Vec<(f64, f64)> = banded.iter().map(|&(x, lo, _)| (x, lo)).collect();
            outline.extend(banded.iter().rev().map(|&(x, _, hi)| (x, hi)));
            chart.draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.15).filled(),
            )))?;
        }
        let line: Vec<(f64, f64)> = s.points.iter().map(|&(x, y, _)| (x, y)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(&s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    if let Some(h) = plot.hline {
        chart.draw_series(LineSeries::new(
            vec![(plot.x_range.0, h), (plot.x_range.1, h)],
            BLACK.mix(0.6).stroke_width(1),
        ))?;
    }
    if !plot.series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let plot = LinePlot {
            title: "video ↛ last".into(),
            x_label: "layer".into(),
            y_label: "% change".into(),
            x_range: (0.5, 4.5),
            hline: Some(0.0),
            series: vec![Series {
                name: "a ↛ b".into(),
                points: vec![
                    (1.0, -3.0, Some((-5.0, -1.0))),
                    (2.0, 1.0, None),
                    (3.0, 0.5, Some((0.0, 1.0))),
                ],
            }],
        };
        let (png, svg) = write_line_plot(&dir.path().join("p"), &plot).unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // Something besides the white background was drawn.
        assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("a ↛ b"));
    }
}
