//! Flat-colour shapes on a small canvas, optionally wrapping around the frame edges (a torus).

use image::{Rgb, RgbImage};

/// Named colours, far apart in RGB and still distinct after 4:2:0 chroma subsampling.
pub const PALETTE: [(&str, [u8; 3]); 8] = [
    ("red", [230, 40, 40]),
    ("green", [40, 190, 60]),
    ("blue", [40, 90, 240]),
    ("yellow", [240, 220, 40]),
    ("purple", [150, 50, 210]),
    ("orange", [250, 140, 20]),
    ("cyan", [30, 210, 220]),
    ("white", [240, 240, 240]),
];

/// Background of every task but `scene_transition` (not a palette colour).
pub const BACKGROUND: [u8; 3] = [32, 32, 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Square,
    Circle,
    Triangle,
    Diamond,
}

pub const SHAPES: [Shape; 4] = [
    Shape::Square,
    Shape::Circle,
    Shape::Triangle,
    Shape::Diamond,
];

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Square => "square",
            Shape::Circle => "circle",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
        }
    }

    pub fn index(self) -> usize {
        SHAPES.iter().position(|s| *s == self).unwrap()
    }

    /// Whether the point (u, v) of the unit box centred at 0 (both in -0.5..0.5) is inside.
    fn contains(self, u: f64, v: f64) -> bool {
        match self {
            Shape::Square => true,
            Shape::Circle => u * u + v * v <= 0.25,
            // Apex at the top, base at the bottom.
            Shape::Triangle => u.abs() <= (v + 0.5) / 2.0,
            Shape::Diamond => u.abs() + v.abs() <= 0.5,
        }
    }
}

pub fn colour_name(c: usize) -> &'static str {
    PALETTE[c].0
}

pub fn canvas(size: u32, background: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(size, size, Rgb(background))
}

/// Draws `shape` of `colour` (a palette index) in the `side x side` box whose top-left corner is
/// (x, y). With `wrap`, pixels past an edge reappear at the opposite edge; without, they are cut.
pub fn draw(
    img: &mut RgbImage,
    shape: Shape,
    colour: usize,
    x: i64,
    y: i64,
    side: i64,
    wrap: bool,
) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let px = Rgb(PALETTE[colour].1);
    for j in 0..side {
        let v = (j as f64 + 0.5) / side as f64 - 0.5;
        for i in 0..side {
            let u = (i as f64 + 0.5) / side as f64 - 0.5;
            if !shape.contains(u, v) {
                continue;
            }
            let (mut xx, mut yy) = (x + i, y + j);
            if wrap {
                xx = xx.rem_euclid(w);
                yy = yy.rem_euclid(h);
            } else if xx < 0 || yy < 0 || xx >= w || yy >= h {
                continue;
            }
            img.put_pixel(xx as u32, yy as u32, px);
        }
    }
}
