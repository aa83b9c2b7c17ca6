//! A small chart writer: line charts and grouped bar charts as plain SVG,
//! with axes, ticks, linear or log scales, a legend, a title and axis labels.
//!
//! Written by hand so that the report needs no plotting crate (and no
//! fonts, no native libraries): the output is a few hundred lines of SVG
//! that any browser, and GitHub's file view, renders as is.

use std::fmt::Write as _;

use super::data::{fmt_bytes, fmt_si, fmt_sig};

const WIDTH_PX: f64 = 860.0;
const PLOT_HEIGHT_PX: f64 = 360.0;
const LEFT_PX: f64 = 84.0;
/// Room for the legend right of the plot.
const RIGHT_PX: f64 = 210.0;
const TOP_PX: f64 = 66.0;
const BOTTOM_PX: f64 = 60.0;
const NOTE_LINE_PX: f64 = 16.0;
/// A rough width of one character at the 12 px font, to lay out labels
/// without measuring text.
const CHAR_PX: f64 = 6.6;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base 10; values at or below zero cannot be shown and are left out
    /// (with a note on the chart).
    Log,
}

impl Scale {
    /// Log when the values span more than `span` times (so that the small
    /// ones are still readable), linear otherwise.
    pub fn auto(values: impl IntoIterator<Item = f64>, span: f64) -> Scale {
        let positive: Vec<f64> = values
            .into_iter()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if positive.len() >= 2 && hi / lo > span {
            Scale::Log
        } else {
            Scale::Linear
        }
    }
}

/// One axis: its label (with the unit), its scale and how ticks read.
#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    /// Where ticks go; `None` picks 1-2-5 steps (linear) or powers of ten (log).
    pub ticks: Option<Vec<f64>>,
    pub format: fn(f64) -> String,
    /// Ticks at powers of two (log) or 1-2-5 steps of KiB/MiB (linear), so
    /// that a byte axis reads "64 KiB" rather than "97.7 KiB".
    pub binary: bool,
}

impl Axis {
    pub fn new(label: impl Into<String>, scale: Scale) -> Axis {
        Axis {
            label: label.into(),
            scale,
            ticks: None,
            format: fmt_si,
            binary: false,
        }
    }

    /// An axis of bytes: binary ticks, labelled "16 KiB".
    pub fn bytes(label: impl Into<String>, scale: Scale) -> Axis {
        Axis {
            binary: true,
            format: fmt_bytes,
            ..Axis::new(label, scale)
        }
    }

    pub fn with_format(mut self, format: fn(f64) -> String) -> Axis {
        self.format = format;
        self
    }

    /// Ticks at the given values, thinned to at most `max` so labels do not
    /// collide.
    pub fn with_ticks(mut self, mut ticks: Vec<f64>, max: usize) -> Axis {
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        let stride = ticks.len().div_ceil(max.max(1)).max(1);
        self.ticks = Some(ticks.into_iter().step_by(stride).collect());
        self
    }
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: String,
    /// Drawn dashed: used for a reference line such as the floor.
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub subtitle: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Lines of small print under the chart.
    pub notes: Vec<String>,
}

/// One bar per category.
#[derive(Debug, Clone)]
pub struct BarSeries {
    pub name: String,
    pub colour: String,
    /// One per category; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// Grouped bars: one group per category, one bar per series in each.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub categories: Vec<String>,
    pub y: Axis,
    pub series: Vec<BarSeries>,
    pub notes: Vec<String>,
}

/// Escapes text for SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The span of values an axis shows.
#[derive(Debug, Clone, Copy)]
struct Range {
    scale: Scale,
    lo: f64,
    hi: f64,
    binary: bool,
}

impl Range {
    /// Fits `values` (and explicit ticks), or `None` when nothing can be
    /// shown. Bars on a linear axis start at zero, so `include_zero` keeps it.
    fn fit(axis: &Axis, values: &[f64], include_zero: bool) -> Option<Range> {
        let mut shown: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && (axis.scale == Scale::Linear || *v > 0.0))
            .collect();
        if shown.is_empty() {
            return None;
        }
        if let Some(ticks) = &axis.ticks {
            shown.extend(
                ticks
                    .iter()
                    .filter(|t| axis.scale == Scale::Linear || **t > 0.0),
            );
        }
        let min = shown.iter().copied().fold(f64::INFINITY, f64::min);
        let max = shown.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match axis.scale {
            Scale::Linear => {
                let (mut lo, mut hi) = if include_zero {
                    (min.min(0.0), max.max(0.0))
                } else {
                    (min, max)
                };
                if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
                    let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
                    lo -= if include_zero && lo == 0.0 { 0.0 } else { pad };
                    hi += pad;
                }
                if axis.ticks.is_none() {
                    let step = nice_step((hi - lo) / 5.0, axis.binary);
                    lo = (lo / step).floor() * step;
                    hi = (hi / step).ceil() * step;
                } else {
                    let pad = (hi - lo) * 0.05;
                    lo -= if include_zero && lo == 0.0 { 0.0 } else { pad };
                    hi += pad;
                }
                Some(Range {
                    scale: Scale::Linear,
                    lo,
                    hi,
                    binary: axis.binary,
                })
            }
            Scale::Log => {
                // Padding keeps the smallest bar visible above the axis
                // and the extreme points off the frame.
                let (lo, hi) = if axis.ticks.is_some() {
                    // Given ticks are the tested points: pad a little
                    // rather than snap, which would waste the width.
                    (min / 1.4, max * 1.4)
                } else if axis.binary {
                    (
                        2f64.powf((min / 1.15).log2().floor()),
                        2f64.powf((max * 1.15).log2().ceil()),
                    )
                } else {
                    (snap_125(min / 1.15, false), snap_125(max * 1.15, true))
                };
                Some(Range {
                    scale: Scale::Log,
                    lo,
                    hi,
                    binary: axis.binary,
                })
            }
        }
    }

    /// Where `v` falls, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        }
    }

    fn contains(&self, v: f64) -> bool {
        let eps = (self.hi - self.lo).abs() * 1e-9;
        v >= self.lo - eps && v <= self.hi + eps && (self.scale == Scale::Linear || v > 0.0)
    }

    fn ticks(&self, explicit: Option<&Vec<f64>>) -> Vec<f64> {
        if let Some(ticks) = explicit {
            return ticks
                .iter()
                .copied()
                .filter(|t| self.contains(*t))
                .collect();
        }
        match self.scale {
            Scale::Linear => {
                let step = nice_step((self.hi - self.lo) / 5.0, self.binary);
                let first = (self.lo / step).ceil() as i64;
                let last = (self.hi / step).floor() as i64;
                (first..=last).map(|i| i as f64 * step).collect()
            }
            Scale::Log if self.binary => {
                let first = self.lo.log2().ceil() as i32;
                let last = self.hi.log2().floor() as i32;
                // Every power of two when few, else every 4th, 16th, 1024th.
                let stride = [1, 2, 4, 10, 20]
                    .into_iter()
                    .find(|s| (last - first) / s < 9)
                    .unwrap_or(30);
                (first..=last)
                    .filter(|e| e.rem_euclid(stride) == 0)
                    .map(|e| 2f64.powi(e))
                    .collect()
            }
            Scale::Log => {
                let first = self.lo.log10().floor() as i32;
                let last = self.hi.log10().ceil() as i32;
                // Few decades leave room for 2 and 5 between the powers.
                let decades = (self.hi / self.lo).log10();
                let multiples: &[f64] = if decades <= 2.5 {
                    &[1.0, 2.0, 5.0]
                } else {
                    &[1.0]
                };
                let mut ticks = Vec::new();
                for e in first..=last {
                    let base = 10f64.powi(e);
                    ticks.extend(
                        multiples
                            .iter()
                            .map(|m| m * base)
                            .filter(|t| self.contains(*t)),
                    );
                }
                let stride = ticks.len().div_ceil(10).max(1);
                ticks.into_iter().step_by(stride).collect()
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`; with `binary`, a power
/// of two times a power of 1024 (so 256 KiB, 1 MiB).
fn nice_step(raw: f64, binary: bool) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    if binary && raw >= 1.0 {
        let unit = 1024f64.powf(raw.log(1024.0).floor());
        return 2f64.powf((raw / unit).log2().ceil()) * unit;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let n = raw / magnitude;
    let nice = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The 1-2-5 value next to `v`: at or above it when `up`, else at or below.
fn snap_125(v: f64, up: bool) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0];
    let n = v / magnitude;
    let pick = if up {
        steps
            .iter()
            .copied()
            .find(|s| *s >= n - 1e-9)
            .unwrap_or(10.0)
    } else {
        steps
            .iter()
            .copied()
            .rev()
            .find(|s| *s <= n + 1e-9)
            .unwrap_or(1.0)
    };
    pick * magnitude
}

/// A pixel coordinate, short and stable in the output.
fn px(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Box,
    Line { dashed: bool },
}

/// The frame every chart shares: title, plot area, axes, legend, notes.
struct Canvas {
    out: String,
    plot_w: f64,
    plot_h: f64,
    height: f64,
    /// Extra room under the x axis for rotated category labels.
    x_label_room: f64,
}

impl Canvas {
    fn new(title: &str, subtitle: &str, x_label_room: f64, notes: usize) -> Canvas {
        let plot_w = WIDTH_PX - LEFT_PX - RIGHT_PX;
        let plot_h = PLOT_HEIGHT_PX;
        let height = TOP_PX + plot_h + BOTTOM_PX + x_label_room + notes as f64 * NOTE_LINE_PX;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#,
            w = px(WIDTH_PX),
            h = px(height)
        );
        let _ = writeln!(out, "<title>{}</title>", escape(title));
        let _ = writeln!(
            out,
            r#"<rect x="0" y="0" width="100%" height="100%" fill="white"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
            px(WIDTH_PX / 2.0),
            escape(title)
        );
        if !subtitle.is_empty() {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="44" text-anchor="middle" fill="#555555">{}</text>"##,
                px(WIDTH_PX / 2.0),
                escape(subtitle)
            );
        }
        Canvas {
            out,
            plot_w,
            plot_h,
            height,
            x_label_room,
        }
    }

    fn y_px(&self, range: &Range, v: f64) -> f64 {
        TOP_PX + self.plot_h * (1.0 - range.frac(v))
    }

    fn x_px(&self, range: &Range, v: f64) -> f64 {
        LEFT_PX + self.plot_w * range.frac(v)
    }

    /// The y axis: grid lines, tick labels and the rotated axis label.
    fn y_axis(&mut self, axis: &Axis, range: &Range) {
        for t in range.ticks(axis.ticks.as_ref()) {
            let y = px(self.y_px(range, t));
            let _ = writeln!(
                self.out,
                r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e0e0e0"/>"##,
                px(LEFT_PX),
                px(LEFT_PX + self.plot_w)
            );
            let _ = writeln!(
                self.out,
                r#"<text x="{}" y="{y}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
                px(LEFT_PX - 6.0),
                escape(&(axis.format)(t))
            );
        }
        let cy = TOP_PX + self.plot_h / 2.0;
        let _ = writeln!(
            self.out,
            r#"<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">{}</text>"#,
            escape(&axis_label(axis)),
            cy = px(cy)
        );
    }

    /// The x axis of a line chart: grid lines and tick labels.
    fn x_axis(&mut self, axis: &Axis, range: &Range) {
        let bottom = TOP_PX + self.plot_h;
        for t in range.ticks(axis.ticks.as_ref()) {
            let x = px(self.x_px(range, t));
            let _ = writeln!(
                self.out,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#e0e0e0"/>"##,
                px(TOP_PX),
                px(bottom)
            );
            let _ = writeln!(
                self.out,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                px(bottom + 18.0),
                escape(&(axis.format)(t))
            );
        }
        self.x_label(&axis_label(axis));
    }

    fn x_label(&mut self, label: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(LEFT_PX + self.plot_w / 2.0),
            px(TOP_PX + self.plot_h + 42.0 + self.x_label_room),
            escape(label)
        );
    }

    /// The plot area's border, drawn after the data so it stays on top.
    fn frame(&mut self) {
        let _ = writeln!(
            self.out,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
            px(LEFT_PX),
            px(TOP_PX),
            px(self.plot_w),
            px(self.plot_h)
        );
    }

    /// Legend entries right of the plot: a swatch (a box for bars, a line
    /// for lines) and a name.
    fn legend(&mut self, entries: &[(String, String, Swatch)]) {
        let x = LEFT_PX + self.plot_w + 18.0;
        for (i, (name, colour, swatch)) in entries.iter().enumerate() {
            let y = TOP_PX + 8.0 + i as f64 * 20.0;
            if let Swatch::Line { dashed } = swatch {
                let dash = if *dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                };
                let _ = writeln!(
                    self.out,
                    r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/>"#,
                    px(x - 2.0),
                    px(x + 14.0),
                    escape(colour),
                    y = px(y + 6.0)
                );
            } else {
                let _ = writeln!(
                    self.out,
                    r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/>"#,
                    px(x),
                    px(y),
                    escape(colour)
                );
            }
            let _ = writeln!(
                self.out,
                r#"<text x="{}" y="{}" dominant-baseline="middle">{}</text>"#,
                px(x + 20.0),
                px(y + 6.0),
                escape(name)
            );
        }
    }

    fn notes(&mut self, notes: &[String]) {
        let first = TOP_PX + self.plot_h + BOTTOM_PX + self.x_label_room;
        for (i, note) in notes.iter().enumerate() {
            let _ = writeln!(
                self.out,
                r##"<text x="{}" y="{}" font-size="11" fill="#555555">{}</text>"##,
                px(LEFT_PX),
                px(first + i as f64 * NOTE_LINE_PX + 4.0),
                escape(note)
            );
        }
    }

    /// A centred message where the data would go.
    fn empty(&mut self, message: &str) {
        let _ = writeln!(
            self.out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555555">{}</text>"##,
            px(LEFT_PX + self.plot_w / 2.0),
            px(TOP_PX + self.plot_h / 2.0),
            escape(message)
        );
    }

    fn finish(mut self) -> String {
        // `height` was fixed up front; nothing may be drawn below it.
        debug_assert!(self.height > TOP_PX + self.plot_h);
        self.out.push_str("</svg>\n");
        self.out
    }
}

fn axis_label(axis: &Axis) -> String {
    match axis.scale {
        Scale::Linear => axis.label.clone(),
        Scale::Log => format!("{} (log scale)", axis.label),
    }
}

fn hidden_note(hidden: usize) -> Option<String> {
    (hidden > 0).then(|| {
        format!("{hidden} value(s) at or below zero are not shown: a log scale cannot place them.")
    })
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .collect();
        let x_range = Range::fit(&self.x, &xs, false);
        let y_range = Range::fit(&self.y, &ys, false);
        let mut hidden = 0;
        let mut notes = self.notes.clone();
        let plotted: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                let mut points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| {
                        let ok = x_range.is_some_and(|r| r.contains(*x))
                            && y_range.is_some_and(|r| r.contains(*y));
                        hidden += usize::from(!ok);
                        ok
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                points
            })
            .collect();
        notes.extend(hidden_note(hidden));
        let mut canvas = Canvas::new(&self.title, &self.subtitle, 0.0, notes.len());
        match (x_range, y_range) {
            (Some(xr), Some(yr)) => {
                canvas.y_axis(&self.y, &yr);
                canvas.x_axis(&self.x, &xr);
                for (series, points) in self.series.iter().zip(&plotted) {
                    let coords: Vec<String> = points
                        .iter()
                        .map(|(x, y)| {
                            format!("{},{}", px(canvas.x_px(&xr, *x)), px(canvas.y_px(&yr, *y)))
                        })
                        .collect();
                    let colour = escape(&series.colour);
                    if coords.len() >= 2 {
                        let dash = if series.dashed {
                            r#" stroke-dasharray="6 4""#
                        } else {
                            ""
                        };
                        let _ = writeln!(
                            canvas.out,
                            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                            coords.join(" ")
                        );
                    }
                    for ((x, y), xy) in points.iter().zip(&coords) {
                        let (cx, cy) = xy.split_once(',').unwrap_or(("0", "0"));
                        let _ = writeln!(
                            canvas.out,
                            r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{colour}"><title>{}: {}, {}</title></circle>"#,
                            escape(&series.name),
                            escape(&(self.x.format)(*x)),
                            escape(&fmt_sig(*y, 4))
                        );
                    }
                }
            }
            _ => {
                canvas.y_axis_label_only(&self.y);
                canvas.x_label(&axis_label(&self.x));
                canvas.empty("no data to plot");
            }
        }
        canvas.frame();
        let entries: Vec<(String, String, Swatch)> = self
            .series
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.colour.clone(),
                    Swatch::Line { dashed: s.dashed },
                )
            })
            .collect();
        canvas.legend(&entries);
        canvas.notes(&notes);
        canvas.finish()
    }
}

impl Canvas {
    fn y_axis_label_only(&mut self, axis: &Axis) {
        let cy = px(TOP_PX + self.plot_h / 2.0);
        let _ = writeln!(
            self.out,
            r#"<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">{}</text>"#,
            escape(&axis_label(axis))
        );
    }
}

impl BarChart {
    pub fn to_svg(&self) -> String {
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .collect();
        let range = Range::fit(&self.y, &values, true);
        let plot_w = WIDTH_PX - LEFT_PX - RIGHT_PX;
        let band_px = plot_w / self.categories.len().max(1) as f64;
        let longest = self
            .categories
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0) as f64;
        // Rotate category labels that would run into their neighbours.
        let rotate = longest * CHAR_PX > band_px * 0.95;
        let label_room = if rotate {
            longest * CHAR_PX * 0.5 + 6.0
        } else {
            0.0
        };
        let mut hidden = 0;
        let mut notes = self.notes.clone();
        if let Some(r) = &range {
            hidden = values.iter().filter(|v| !r.contains(**v)).count();
        }
        notes.extend(hidden_note(hidden));
        let mut canvas = Canvas::new(&self.title, &self.subtitle, label_room, notes.len());
        let bottom = TOP_PX + canvas.plot_h;
        for (i, category) in self.categories.iter().enumerate() {
            let cx = LEFT_PX + band_px * (i as f64 + 0.5);
            let y = bottom + 18.0;
            if rotate {
                let _ = writeln!(
                    canvas.out,
                    r#"<text x="{x}" y="{y}" text-anchor="end" transform="rotate(-30 {x} {y})">{}</text>"#,
                    escape(category),
                    x = px(cx),
                    y = px(y - 6.0)
                );
            } else {
                let _ = writeln!(
                    canvas.out,
                    r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                    px(cx),
                    px(y),
                    escape(category)
                );
            }
        }
        canvas.x_label(&self.x_label);
        match range {
            Some(r) => {
                canvas.y_axis(&self.y, &r);
                let base = match r.scale {
                    Scale::Linear => 0.0f64.clamp(r.lo, r.hi),
                    Scale::Log => r.lo,
                };
                let base_px = canvas.y_px(&r, base);
                let n = self.series.len().max(1) as f64;
                let bar_px = band_px * 0.8 / n;
                for (si, series) in self.series.iter().enumerate() {
                    for (ci, value) in series.values.iter().enumerate() {
                        let Some(v) = value.filter(|v| r.contains(*v)) else {
                            continue;
                        };
                        let x = LEFT_PX + band_px * (ci as f64 + 0.1) + bar_px * si as f64;
                        let y = canvas.y_px(&r, v);
                        let (top, height) = if y <= base_px {
                            (y, base_px - y)
                        } else {
                            (base_px, y - base_px)
                        };
                        let _ = writeln!(
                            canvas.out,
                            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} · {}: {}</title></rect>"#,
                            px(x),
                            px(top),
                            px(bar_px.max(1.0)),
                            px(height.max(0.5)),
                            escape(&series.colour),
                            escape(self.categories.get(ci).map(String::as_str).unwrap_or("")),
                            escape(&series.name),
                            escape(&(self.y.format)(v))
                        );
                    }
                }
            }
            None => {
                canvas.y_axis_label_only(&self.y);
                canvas.empty("no data to plot");
            }
        }
        canvas.frame();
        let entries: Vec<(String, String, Swatch)> = self
            .series
            .iter()
            .map(|s| (s.name.clone(), s.colour.clone(), Swatch::Box))
            .collect();
        canvas.legend(&entries);
        canvas.notes(&notes);
        canvas.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let axis = Axis::new("y", Scale::Log);
        let r = Range::fit(&axis, &[3.0, 4000.0], false).unwrap();
        assert_eq!((r.lo, r.hi), (2.0, 5000.0));
        assert_eq!(r.ticks(None), vec![10.0, 100.0, 1000.0]);
    }

    #[test]
    fn linear_ticks_are_nice_steps() {
        let axis = Axis::new("y", Scale::Linear);
        let r = Range::fit(&axis, &[3.0, 47.0], true).unwrap();
        assert_eq!((r.lo, r.hi), (0.0, 50.0));
        assert_eq!(r.ticks(None), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
    }

    #[test]
    fn byte_axes_tick_at_powers_of_two() {
        let axis = Axis::bytes("b", Scale::Log);
        let r = Range::fit(&axis, &[12_000.0, 900_000.0], true).unwrap();
        assert_eq!((r.lo, r.hi), (8192.0, 1_048_576.0));
        let ticks: Vec<f64> = (13..=20).map(|e| 2f64.powi(e)).collect();
        assert_eq!(r.ticks(None), ticks);
        assert_eq!(nice_step(200_000.0, true), 256.0 * 1024.0);
    }

    #[test]
    fn text_is_escaped() {
        let chart = LineChart {
            title: "a < b & c".into(),
            subtitle: String::new(),
            x: Axis::new("x", Scale::Linear),
            y: Axis::new("y", Scale::Log),
            series: vec![Series {
                name: "\"s\"".into(),
                colour: "#000000".into(),
                dashed: false,
                points: vec![(1.0, 1.0), (2.0, 0.0)],
            }],
            notes: vec![],
        };
        let svg = chart.to_svg();
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("&quot;s&quot;"));
        assert!(svg.contains("not shown"));
    }
}
