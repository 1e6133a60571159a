//! The task generators. Each draws one clip for a given content class from its own random stream.
//!
//! Why no single frame gives the answer away (the property `tests/synth.rs` checks):
//!
//! - `moving_direction`: the frame is a torus (objects leaving one edge re-enter at the opposite
//!   one) and every object starts at a uniform position, so in every frame each object's position
//!   is uniform whatever the direction; the mover looks like the static distractors (same
//!   appearance distribution). Any single frame has the same distribution for all four answers.
//! - `object_count`: always four objects with the same appearance distribution at uniform torus
//!   positions, drawn in a random order; only how they move between frames depends on the count.
//! - `action_antonym`: the size follows a sawtooth with a uniform random phase: growing objects
//!   grow steadily and restart from the smallest size after the largest, shrinking ones the
//!   reverse. The size in any one frame is uniform over the same range for both answers.
//! - `scene_transition`: a frame shows one of the two background colours, and both options name
//!   both colours. The change happens at a frame drawn symmetrically around the middle, so each
//!   colour fills half of the video on average: a frame taken without its time is exactly as
//!   likely to show the first colour as the second. (No design can do better for a frame whose
//!   position in time is known: the earliest frame showing a scene colour always shows the first
//!   scene. See docs/toy.md.)
//! - `action_sequence`: two static objects each change colour once; colours before and after a
//!   change are drawn from the same distribution, and the options name shapes, not colours, so a
//!   single frame (static shapes, i.i.d. colours) has the same distribution for both answers.
//!
//! The image suite is the opposite: stills whose answer any one frame shows, for the image stage of
//! the toy model: the colour, shape and quadrant of a single object (`object_colour`,
//! `object_shape`, `object_position`) and the number of objects, 1 to 4 (`object_number`).

use image::RgbImage;

use super::draw::{canvas, colour_name, draw, Shape, BACKGROUND, PALETTE, SHAPES};
use super::rng::Rng;

/// Frame size (square) and number of frames of a clip.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub size: i64,
    pub frames: usize,
}

/// One generated clip, options in canonical order (`options[class]` is the true one).
pub struct Clip {
    pub frames: Vec<RgbImage>,
    pub question: String,
    pub options: Vec<String>,
    pub class: usize,
}

/// A task: its name, how many content classes are balanced, and the generator.
pub struct TaskSpec {
    pub name: &'static str,
    pub classes: usize,
    pub make: fn(&mut Rng, usize, Geometry) -> Clip,
}

pub const TEMPORAL: [TaskSpec; 5] = [
    TaskSpec {
        name: "action_antonym",
        classes: 2,
        make: action_antonym,
    },
    TaskSpec {
        name: "action_sequence",
        classes: 2,
        make: action_sequence,
    },
    TaskSpec {
        name: "moving_direction",
        classes: 4,
        make: moving_direction,
    },
    TaskSpec {
        name: "object_count",
        classes: 4,
        make: object_count,
    },
    TaskSpec {
        name: "scene_transition",
        classes: 2,
        make: scene_transition,
    },
];

pub const IMAGE: [TaskSpec; 4] = [
    TaskSpec {
        name: "object_colour",
        classes: 1,
        make: object_colour,
    },
    TaskSpec {
        name: "object_number",
        classes: 4,
        make: object_number,
    },
    TaskSpec {
        name: "object_position",
        classes: 4,
        make: object_position,
    },
    TaskSpec {
        name: "object_shape",
        classes: 1,
        make: object_shape,
    },
];

/// An object: appearance, top-left corner at frame 0, velocity in pixels per frame.
#[derive(Debug, Clone, Copy)]
struct Obj {
    shape: Shape,
    colour: usize,
    side: i64,
    x: i64,
    y: i64,
    vx: i64,
    vy: i64,
}

impl Obj {
    fn draw_at(&self, img: &mut RgbImage, t: usize, wrap: bool) {
        let t = t as i64;
        draw(
            img,
            self.shape,
            self.colour,
            self.x + self.vx * t,
            self.y + self.vy * t,
            self.side,
            wrap,
        );
    }
}

fn side(rng: &mut Rng, g: Geometry) -> i64 {
    rng.range((g.size * 10 / 64).max(3), (g.size * 14 / 64).max(3))
}

/// Pixels per frame of a moving object: about 3/4 of the frame over the clip.
fn speed(g: Geometry) -> i64 {
    ((3 * g.size) as f64 / (4 * g.frames) as f64)
        .round()
        .max(1.0) as i64
}

/// A random object anywhere on the torus (uniform top-left corner), not moving.
fn torus_obj(rng: &mut Rng, g: Geometry) -> Obj {
    Obj {
        shape: *rng.choose(&SHAPES),
        colour: rng.below(PALETTE.len()),
        side: side(rng, g),
        x: rng.below(g.size as usize) as i64,
        y: rng.below(g.size as usize) as i64,
        vx: 0,
        vy: 0,
    }
}

/// Top-left corners for boxes of the given sides, inside `[x0, x1) x [y0, y1)` of each box's own
/// region, without overlaps (2 px apart). `regions[i]` bounds box i.
fn place(rng: &mut Rng, sides: &[i64], regions: &[[i64; 4]]) -> Vec<(i64, i64)> {
    'outer: for _ in 0..10_000 {
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(sides.len());
        for (i, &s) in sides.iter().enumerate() {
            let [x0, y0, x1, y1] = regions[i];
            let x = rng.range(x0, (x1 - s).max(x0));
            let y = rng.range(y0, (y1 - s).max(y0));
            for (j, &(px, py)) in out.iter().enumerate() {
                let ps = sides[j];
                let apart =
                    x + s + 2 <= px || px + ps + 2 <= x || y + s + 2 <= py || py + ps + 2 <= y;
                if !apart {
                    continue 'outer;
                }
            }
            out.push((x, y));
        }
        return out;
    }
    panic!("cannot place {} objects without overlap", sides.len());
}

fn whole_frame(g: Geometry, n: usize) -> Vec<[i64; 4]> {
    vec![[0, 0, g.size, g.size]; n]
}

fn render(
    g: Geometry,
    background: impl Fn(usize) -> [u8; 3],
    objs: &[Obj],
    wrap: bool,
) -> Vec<RgbImage> {
    (0..g.frames)
        .map(|t| {
            let mut img = canvas(g.size as u32, background(t));
            for o in objs {
                o.draw_at(&mut img, t, wrap);
            }
            img
        })
        .collect()
}

pub const DIRECTIONS: [&str; 4] = [
    "Up and to the left.",
    "Up and to the right.",
    "Down and to the left.",
    "Down and to the right.",
];

fn moving_direction(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let v = speed(g);
    let (sx, sy) = [(-1, -1), (1, -1), (-1, 1), (1, 1)][class];
    // Distractors first, the mover last (on top): the same draw order for every answer.
    let mut objs: Vec<Obj> = (0..3).map(|_| torus_obj(rng, g)).collect();
    objs[2].vx = sx * v;
    objs[2].vy = sy * v;
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, true),
        question: "In which direction does the moving object move?".into(),
        options: DIRECTIONS.iter().map(|s| s.to_string()).collect(),
        class,
    }
}

fn object_count(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let v = speed(g);
    let v2 = ((v as f64) * 1.4).round() as i64;
    let velocities = [
        (v, v),
        (v, -v),
        (-v, v),
        (-v, -v),
        (v2, 0),
        (-v2, 0),
        (0, v2),
        (0, -v2),
    ];
    let mut objs: Vec<Obj> = (0..4).map(|_| torus_obj(rng, g)).collect();
    for i in rng.distinct(4, class) {
        let (vx, vy) = *rng.choose(&velocities);
        objs[i].vx = vx;
        objs[i].vy = vy;
    }
    // `distinct` returned the movers in random order, but draw order must not depend on which
    // objects move: shuffle the whole list again.
    rng.shuffle(&mut objs);
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, true),
        question: "How many objects are moving when the video begins?".into(),
        options: (0..4).map(|n| n.to_string()).collect(),
        class,
    }
}

fn action_antonym(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let smin = (g.size / 8).max(2);
    let span = (3 * g.size / 8).max(2);
    let smax = smin + span - 1;
    let rate = ((2 * 16) as f64 / g.frames as f64).round().max(1.0) as i64;
    let dir = if class == 0 { 1 } else { -1 };
    let phase = rng.below(span as usize) as i64;
    let shape = *rng.choose(&SHAPES);
    let colour = rng.below(PALETTE.len());
    let lo = smax / 2 + 1;
    let cx = rng.range(lo, g.size - lo);
    let cy = rng.range(lo, g.size - lo);
    let frames = (0..g.frames)
        .map(|t| {
            let s = smin + (phase + dir * rate * t as i64).rem_euclid(span);
            let mut img = canvas(g.size as u32, BACKGROUND);
            draw(&mut img, shape, colour, cx - s / 2, cy - s / 2, s, false);
            img
        })
        .collect();
    Clip {
        frames,
        question: "How does the size of the object change?".into(),
        options: vec!["It gets bigger.".into(), "It gets smaller.".into()],
        class,
    }
}

fn scene_transition(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let pair = rng.distinct(PALETTE.len(), 2);
    let (x, y) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
    let (first, second) = if class == 0 { (x, y) } else { (y, x) };
    let t = g.frames as f64;
    let change = rng.range(
        (3.0 * t / 8.0).round() as i64,
        (5.0 * t / 8.0).round() as i64,
    ) as usize;
    let others: Vec<usize> = (0..PALETTE.len()).filter(|c| *c != x && *c != y).collect();
    let sides = [side(rng, g), side(rng, g)];
    let pos = place(rng, &sides, &whole_frame(g, 2));
    let objs: Vec<Obj> = (0..2)
        .map(|i| Obj {
            shape: *rng.choose(&SHAPES),
            colour: *rng.choose(&others),
            side: sides[i],
            x: pos[i].0,
            y: pos[i].1,
            vx: 0,
            vy: 0,
        })
        .collect();
    let bg = |f: usize| PALETTE[if f < change { first } else { second }].1;
    Clip {
        frames: render(g, bg, &objs, false),
        question: "How does the background colour change?".into(),
        options: vec![
            format!("From {} to {}.", colour_name(x), colour_name(y)),
            format!("From {} to {}.", colour_name(y), colour_name(x)),
        ],
        class,
    }
}

fn action_sequence(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let mut shapes = rng.distinct(SHAPES.len(), 2);
    shapes.sort();
    let sides = [side(rng, g), side(rng, g)];
    let pos = place(rng, &sides, &whole_frame(g, 2));
    let colours: Vec<(usize, usize)> = (0..2)
        .map(|_| {
            let before = rng.below(PALETTE.len());
            let after = (before + 1 + rng.below(PALETTE.len() - 1)) % PALETTE.len();
            (before, after)
        })
        .collect();
    let t = g.frames as i64;
    let t1 = rng.range(t / 8, 3 * t / 8);
    let t2 = (t1 + rng.range(t / 4, 3 * t / 8)).min(t - 3).max(t1 + 1);
    // Object `class` changes first.
    let when = if class == 0 { [t1, t2] } else { [t2, t1] };
    let frames = (0..g.frames)
        .map(|f| {
            let mut img = canvas(g.size as u32, BACKGROUND);
            for i in 0..2 {
                let c = if (f as i64) < when[i] {
                    colours[i].0
                } else {
                    colours[i].1
                };
                draw(
                    &mut img,
                    SHAPES[shapes[i]],
                    c,
                    pos[i].0,
                    pos[i].1,
                    sides[i],
                    false,
                );
            }
            img
        })
        .collect();
    Clip {
        frames,
        question: "What happens first?".into(),
        options: shapes
            .iter()
            .map(|&s| format!("The {} changes colour.", SHAPES[s].name()))
            .collect(),
        class,
    }
}

/// Up to `n` objects with distinct shapes and distinct colours at non-overlapping places.
fn distinct_objects(rng: &mut Rng, n: usize, g: Geometry, regions: &[[i64; 4]]) -> Vec<Obj> {
    let shapes = rng.distinct(SHAPES.len(), n);
    let colours = rng.distinct(PALETTE.len(), n);
    let sides: Vec<i64> = (0..n).map(|_| side(rng, g)).collect();
    let pos = place(rng, &sides, regions);
    (0..n)
        .map(|i| Obj {
            shape: SHAPES[shapes[i]],
            colour: colours[i],
            side: sides[i],
            x: pos[i].0,
            y: pos[i].1,
            vx: 0,
            vy: 0,
        })
        .collect()
}

/// The true option first, then `k - 1` others from `pool`.
fn options_with(
    rng: &mut Rng,
    truth: usize,
    pool: usize,
    k: usize,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    let mut others: Vec<usize> = (0..pool).filter(|&i| i != truth).collect();
    rng.shuffle(&mut others);
    std::iter::once(truth)
        .chain(others.into_iter().take(k - 1))
        .map(name)
        .collect()
}

fn object_colour(rng: &mut Rng, _class: usize, g: Geometry) -> Clip {
    let objs = distinct_objects(rng, 1, g, &whole_frame(g, 1));
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, false),
        question: "What colour is the object?".into(),
        options: options_with(rng, objs[0].colour, PALETTE.len(), 4, |c| {
            colour_name(c).to_string()
        }),
        class: 0,
    }
}

fn object_shape(rng: &mut Rng, _class: usize, g: Geometry) -> Clip {
    let objs = distinct_objects(rng, 1, g, &whole_frame(g, 1));
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, false),
        question: "What shape is the object?".into(),
        options: options_with(rng, objs[0].shape.index(), SHAPES.len(), 4, |s| {
            SHAPES[s].name().to_string()
        }),
        class: 0,
    }
}

pub const QUADRANTS: [&str; 4] = [
    "In the top left.",
    "In the top right.",
    "In the bottom left.",
    "In the bottom right.",
];

fn object_position(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let half = g.size / 2;
    let (qx, qy) = ((class % 2) as i64, (class / 2) as i64);
    let region = [
        qx * half + 2,
        qy * half + 2,
        qx * half + half - 2,
        qy * half + half - 2,
    ];
    let objs = distinct_objects(rng, 1, g, &[region]);
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, false),
        question: "Where is the object?".into(),
        options: QUADRANTS.iter().map(|s| s.to_string()).collect(),
        class,
    }
}

fn object_number(rng: &mut Rng, class: usize, g: Geometry) -> Clip {
    let n = class + 1;
    let objs: Vec<Obj> = {
        let sides: Vec<i64> = (0..n).map(|_| side(rng, g)).collect();
        let pos = place(rng, &sides, &whole_frame(g, n));
        (0..n)
            .map(|i| Obj {
                shape: *rng.choose(&SHAPES),
                colour: rng.below(PALETTE.len()),
                side: sides[i],
                x: pos[i].0,
                y: pos[i].1,
                vx: 0,
                vy: 0,
            })
            .collect()
    };
    Clip {
        frames: render(g, |_| BACKGROUND, &objs, false),
        question: "How many objects are there?".into(),
        options: (1..=4).map(|n| n.to_string()).collect(),
        class,
    }
}
