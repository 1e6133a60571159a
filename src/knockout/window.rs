//! Which layers a knockout blocks when the sweep is at layer `l` (design.md §3), and the sweep's
//! own layer range.
//!
//! The styles follow the published reference exactly: `center` blocks
//! `[max(0, l − ⌊k/2⌋), min(L, l + ⌈k/2⌉))`, `inverse` every other layer, `top_down` `[l, L)`,
//! `bottom_up` `[0, l]`. Layers are 0-based here; plots show `l + 1`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the blocked layers sit around the sweep layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStyle {
    Center,
    Inverse,
    TopDown,
    BottomUp,
}

impl WindowStyle {
    pub const ALL: [WindowStyle; 4] = [
        WindowStyle::Center,
        WindowStyle::Inverse,
        WindowStyle::TopDown,
        WindowStyle::BottomUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowStyle::Center => "center",
            WindowStyle::Inverse => "inverse",
            WindowStyle::TopDown => "top_down",
            WindowStyle::BottomUp => "bottom_up",
        }
    }
}

impl fmt::Display for WindowStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WindowStyle {
    type Err = Error;
    fn from_str(s: &str) -> Result<WindowStyle> {
        WindowStyle::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown window style {s:?}; expected center, inverse, top_down or bottom_up"
                ))
            })
    }
}

/// The sorted 0-based layers blocked at sweep layer `layer` with window size `window` in a model
/// of `num_layers` layers. May be empty (e.g. `inverse` with a window covering every layer).
pub fn window_layers(
    style: WindowStyle,
    layer: usize,
    window: usize,
    num_layers: usize,
) -> Vec<usize> {
    let center = || {
        let start = layer.saturating_sub(window / 2);
        let end = num_layers.min(layer + window.div_ceil(2));
        start..end
    };
    match style {
        WindowStyle::Center => center().collect(),
        WindowStyle::Inverse => {
            let c = center();
            (0..num_layers).filter(|l| !c.contains(l)).collect()
        }
        WindowStyle::TopDown => (layer.min(num_layers)..num_layers).collect(),
        WindowStyle::BottomUp => (0..num_layers.min(layer + 1)).collect(),
    }
}

/// The sweep's layers: `start..end`, 0-based, end exclusive (the reference's `--sweep_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRange {
    pub start: usize,
    pub end: usize,
}

impl LayerRange {
    pub fn all(num_layers: usize) -> LayerRange {
        LayerRange {
            start: 0,
            end: num_layers,
        }
    }

    /// The layers of the range, checked against the model's layer count.
    pub fn layers(self, num_layers: usize) -> Result<Vec<usize>> {
        if self.start >= self.end || self.end > num_layers {
            return Err(Error::Input(format!(
                "sweep layers {self} are not a non-empty part of the model's layers 0-{num_layers} \
                 (0-based, end exclusive)"
            )));
        }
        Ok((self.start..self.end).collect())
    }
}

impl fmt::Display for LayerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for LayerRange {
    type Err = Error;
    /// `A-B` (layers A..B, 0-based, B exclusive) or a single layer `A`.
    fn from_str(s: &str) -> Result<LayerRange> {
        let bad = || {
            Error::Input(format!(
                "layer range {s:?}: expected A-B (0-based, end exclusive, e.g. 0-32) or one layer A"
            ))
        };
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let r = match s.split_once('-') {
            Some((a, b)) => LayerRange {
                start: num(a)?,
                end: num(b)?,
            },
            None => {
                let a = num(s)?;
                LayerRange {
                    start: a,
                    end: a.checked_add(1).ok_or_else(bad)?,
                }
            }
        };
        if r.start >= r.end {
            return Err(bad());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_window_of_nine_in_thirty_two_layers() {
        assert_eq!(
            window_layers(WindowStyle::Center, 0, 9, 32),
            (0..5).collect::<Vec<_>>()
        );
        assert_eq!(
            window_layers(WindowStyle::Center, 10, 9, 32),
            (6..15).collect::<Vec<_>>()
        );
        assert_eq!(
            window_layers(WindowStyle::Center, 31, 9, 32),
            (27..32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn even_windows_reach_further_back_than_forward() {
        // k = 4: [l - 2, l + 2).
        assert_eq!(
            window_layers(WindowStyle::Center, 5, 4, 32),
            vec![3, 4, 5, 6]
        );
        assert_eq!(window_layers(WindowStyle::Center, 5, 1, 32), vec![5]);
    }

    #[test]
    fn other_styles() {
        assert_eq!(window_layers(WindowStyle::Inverse, 2, 3, 6), vec![0, 4, 5]);
        assert_eq!(
            window_layers(WindowStyle::Inverse, 1, 9, 4),
            Vec::<usize>::new()
        );
        assert_eq!(
            window_layers(WindowStyle::TopDown, 2, 9, 6),
            vec![2, 3, 4, 5]
        );
        assert_eq!(window_layers(WindowStyle::BottomUp, 2, 9, 6), vec![0, 1, 2]);
    }

    #[test]
    fn styles_and_ranges_parse() {
        assert_eq!(
            "top_down".parse::<WindowStyle>().unwrap(),
            WindowStyle::TopDown
        );
        assert!("middle".parse::<WindowStyle>().is_err());
        assert_eq!(
            "2-5".parse::<LayerRange>().unwrap(),
            LayerRange { start: 2, end: 5 }
        );
        assert_eq!(
            "3".parse::<LayerRange>().unwrap(),
            LayerRange { start: 3, end: 4 }
        );
        assert!("5-2".parse::<LayerRange>().is_err());
        assert!(LayerRange { start: 0, end: 9 }.layers(4).is_err());
    }
}
