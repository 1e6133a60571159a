//! Which frames to take: the middle frame of each of F equal segments (MVBench / TVBench).

use std::fmt;

/// A time range in seconds that bounds the sampled frames (TVBench `start` / `end`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeWindow {
    pub start: f64,
    pub end: f64,
}

impl TimeWindow {
    pub fn new(start: f64, end: f64) -> TimeWindow {
        TimeWindow { start, end }
    }
}

/// Why a set of frame indices cannot be chosen. Pure data, so callers can attach the file name.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplingError {
    /// Zero frames were asked for.
    NoFramesAsked,
    /// The video (or the window) holds fewer frames than asked.
    TooFewFrames {
        found: usize,
        asked: usize,
        /// Frame range `[first, last]` of the window, when a window was given.
        window: Option<(usize, usize)>,
    },
    /// The window is not a finite range with `0 <= start < end`.
    InvalidWindow(TimeWindow),
    /// The window starts after the last frame.
    WindowOutside {
        window: TimeWindow,
        total_frames: usize,
        fps: f64,
    },
    /// A window was given but the frame rate is unknown (frame folders without an fps).
    WindowWithoutFps(TimeWindow),
}

impl fmt::Display for SamplingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplingError::NoFramesAsked => write!(f, "0 frames asked; at least 1 is needed"),
            SamplingError::TooFewFrames {
                found,
                asked,
                window: None,
            } => write!(
                f,
                "only {found} decodable frames found, fewer than the {asked} frames asked"
            ),
            SamplingError::TooFewFrames {
                found,
                asked,
                window: Some((a, b)),
            } => write!(
                f,
                "the window holds only {found} frames (frames {a}..={b}), fewer than the {asked} \
                 frames asked"
            ),
            SamplingError::InvalidWindow(w) => write!(
                f,
                "invalid time window [{}, {}] s: expected seconds with 0 <= start < end (start \
                 finite; no end: to the last frame)",
                w.start, w.end
            ),
            SamplingError::WindowOutside {
                window,
                total_frames,
                fps,
            } => write!(
                f,
                "time window [{}, {}] s lies outside the video ({total_frames} frames at {fps:.3} \
                 fps, {:.3} s)",
                window.start,
                window.end,
                *total_frames as f64 / fps
            ),
            SamplingError::WindowWithoutFps(w) => write!(
                f,
                "time window [{}, {}] s given but the frame rate is unknown (give an fps for \
                 frame folders)",
                w.start, w.end
            ),
        }
    }
}

impl std::error::Error for SamplingError {}

/// Frame indices for `num_frames` frames out of `total_frames`, optionally inside a time window.
///
/// The rule is MVBench's `get_index`, which TVBench reuses, reproduced bit for bit (float64,
/// round-half-to-even like Python's `round` and `np.round`):
///
/// ```text
/// first = max(0, round(start * fps))            (0 without a window)
/// last  = min(round(end * fps), total - 1)      (total - 1 without a window)
/// seg   = (last - first) / F
/// idx_i = floor(first + seg / 2 + round(seg * i))      for i = 0 .. F-1
/// ```
///
/// i.e. the middle of each of F equal segments of `[first, last]`. The segment width is
/// `(last - first) / F`, not `frame count / F`: that is the reference's convention, kept so that
/// the frames match published numbers. When the window holds barely F frames two segments can
/// share an index; that is allowed (the frame is repeated), as in the reference.
///
/// Errors: `num_frames == 0`; fewer than `num_frames` frames in the video or the window; a window
/// that is not `0 <= start < end`, or that starts after the last frame; a window without `fps`.
pub fn segment_middle_indices(
    total_frames: usize,
    num_frames: usize,
    window: Option<TimeWindow>,
    fps: Option<f64>,
) -> std::result::Result<Vec<usize>, SamplingError> {
    if num_frames == 0 {
        return Err(SamplingError::NoFramesAsked);
    }
    if total_frames < num_frames {
        return Err(SamplingError::TooFewFrames {
            found: total_frames,
            asked: num_frames,
            window: None,
        });
    }
    let max_frame = total_frames - 1;
    let (first, last) = match window {
        None => (0usize, max_frame),
        Some(w) => {
            // An end of +inf is a window without an end (`start` alone): up to the last frame.
            let end_ok = w.end.is_finite() || w.end == f64::INFINITY;
            if !(w.start.is_finite() && end_ok && w.start >= 0.0 && w.start < w.end) {
                return Err(SamplingError::InvalidWindow(w));
            }
            let fps = match fps {
                Some(f) if f.is_finite() && f > 0.0 => f,
                _ => return Err(SamplingError::WindowWithoutFps(w)),
            };
            let first = (w.start * fps).round_ties_even();
            if first > max_frame as f64 {
                return Err(SamplingError::WindowOutside {
                    window: w,
                    total_frames,
                    fps,
                });
            }
            let first = first as usize;
            let end = (w.end * fps).round_ties_even();
            let last = if end >= max_frame as f64 {
                max_frame
            } else {
                end as usize
            };
            // `start < end` can still round to `last < first` for windows shorter than a frame.
            let found = (last + 1).saturating_sub(first);
            if found < num_frames {
                return Err(SamplingError::TooFewFrames {
                    found,
                    asked: num_frames,
                    window: Some((first, last)),
                });
            }
            (first, last)
        }
    };
    let seg = (last - first) as f64 / num_frames as f64;
    Ok((0..num_frames)
        .map(|i| {
            // Same operation order as the reference: (first + seg/2) + round(seg*i).
            let x = first as f64 + seg / 2.0 + (seg * i as f64).round_ties_even();
            (x.floor() as usize).min(last)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_values() {
        // Values computed with the reference Python formula.
        assert_eq!(
            segment_middle_indices(16, 8, None, None).unwrap(),
            vec![0, 2, 4, 6, 8, 9, 11, 13]
        );
        assert_eq!(
            segment_middle_indices(100, 4, None, None).unwrap(),
            vec![12, 37, 62, 86]
        );
        assert_eq!(segment_middle_indices(1, 1, None, None).unwrap(), vec![0]);
        // window [1, 2] s at 10 fps: frames 10..=20, seg 2.5
        assert_eq!(
            segment_middle_indices(100, 4, Some(TimeWindow::new(1.0, 2.0)), Some(10.0)).unwrap(),
            vec![11, 13, 16, 19]
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            segment_middle_indices(3, 8, None, None),
            Err(SamplingError::TooFewFrames { found: 3, .. })
        ));
        assert!(matches!(
            segment_middle_indices(30, 4, Some(TimeWindow::new(5.0, 6.0)), Some(10.0)),
            Err(SamplingError::WindowOutside { .. })
        ));
        assert!(matches!(
            segment_middle_indices(30, 4, Some(TimeWindow::new(2.0, 1.0)), Some(10.0)),
            Err(SamplingError::InvalidWindow(_))
        ));
        assert!(matches!(
            segment_middle_indices(30, 4, Some(TimeWindow::new(0.0, 1.0)), None),
            Err(SamplingError::WindowWithoutFps(_))
        ));
        for (start, end) in [(f64::NAN, 2.0), (1.0, f64::NAN), (1.0, f64::NEG_INFINITY)] {
            assert!(matches!(
                segment_middle_indices(30, 4, Some(TimeWindow::new(start, end)), Some(10.0)),
                Err(SamplingError::InvalidWindow(_))
            ));
        }
    }

    #[test]
    fn a_window_without_an_end_runs_to_the_last_frame() {
        let open =
            segment_middle_indices(30, 4, Some(TimeWindow::new(1.0, f64::INFINITY)), Some(10.0));
        let closed = segment_middle_indices(30, 4, Some(TimeWindow::new(1.0, 2.9)), Some(10.0));
        assert_eq!(open.unwrap(), closed.unwrap());
    }
}
