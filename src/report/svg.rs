//! Line charts and grouped bar charts, drawn with plotters' SVG backend.
//!
//! This module decides what a chart shows: the span of each axis, where its
//! ticks go (powers of ten, 1-2-5 steps, or powers of two for bytes, so that
//! a byte axis reads "64 KiB" rather than "97.7 KiB"), the legend and the
//! notes. Plotters maps values to pixels, draws the mesh, the series and the
//! text, and writes the SVG. Its SVG backend is used with default features
//! off: text becomes `<text>` elements with a font family, so no font files
//! and no native libraries are needed, and any browser renders the output.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::{fmt_bytes, fmt_si};

const WIDTH_PX: u32 = 860;
const PLOT_HEIGHT_PX: u32 = 360;
/// Room for the y axis's tick labels and its rotated label.
const LEFT_PX: u32 = 84;
/// Keeps the rotated y axis label off the left edge.
const LEFT_MARGIN_PX: u32 = 10;
/// Room for the legend right of the plot.
const RIGHT_PX: u32 = 210;
const TOP_PX: u32 = 66;
/// Room under the plot for the x axis's tick labels and its label.
const X_AXIS_PX: u32 = 46;
/// Between the x axis's label and the notes.
const NOTES_GAP_PX: u32 = 14;
const NOTE_LINE_PX: u32 = 16;
/// One row of staggered category labels.
const CATEGORY_ROW_PX: u32 = 15;
/// A rough width of one character at the 12 px font, to lay out labels
/// without measuring text (the SVG is rendered by whoever views it).
const CHAR_PX: f64 = 6.6;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const GRID: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GREY_TEXT: RGBColor = RGBColor(0x55, 0x55, 0x55);

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

/// Why a chart could not be drawn (plotters reported a drawing error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawError(pub String);

impl std::fmt::Display for DrawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "drawing the chart failed: {}", self.0)
    }
}

impl std::error::Error for DrawError {}

fn draw_error(e: impl std::fmt::Display) -> DrawError {
    DrawError(e.to_string())
}

/// The span of values an axis shows, and where its ticks go.
#[derive(Debug, Clone, Copy)]
struct Span {
    scale: Scale,
    lo: f64,
    hi: f64,
    binary: bool,
}

impl Span {
    /// Fits `values` (and explicit ticks), or `None` when nothing can be
    /// shown. Bars on a linear axis start at zero, so `include_zero` keeps it.
    fn fit(axis: &Axis, values: &[f64], include_zero: bool) -> Option<Span> {
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
                Some(Span {
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
                Some(Span {
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

/// One axis as plotters sees it: our span, our ticks.
struct AxisCoord {
    span: Span,
    ticks: Vec<f64>,
}

impl AxisCoord {
    fn new(axis: &Axis, span: Span) -> AxisCoord {
        let ticks = span.ticks(axis.ticks.as_ref());
        AxisCoord { span, ticks }
    }

    /// An axis with nothing on it: the bars' categories, or a chart with no data.
    fn bare(lo: f64, hi: f64) -> AxisCoord {
        AxisCoord {
            span: Span {
                scale: Scale::Linear,
                lo,
                hi,
                binary: false,
            },
            ticks: Vec::new(),
        }
    }
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = self.span.frac(*value);
        (f64::from(limit.0) + f64::from(limit.1 - limit.0) * frac).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Grid lines at the ticks only: light lines between them would
        // crowd a log axis.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.span.lo..self.span.hi
    }
}

type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<AxisCoord, AxisCoord>>;

/// Text at `size_px` (plotters' SVG backend writes the size divided by 1.24).
fn text(size_px: f64, colour: RGBColor) -> TextStyle<'static> {
    (FONT, size_px * 1.24).into_font().color(&colour)
}

fn bold_text(size_px: f64) -> TextStyle<'static> {
    (FONT, size_px * 1.24, FontStyle::Bold)
        .into_font()
        .color(&BLACK)
}

/// "#rrggbb" as plotters' colour; anything else draws black.
fn rgb(hex: &str) -> RGBColor {
    let digits = hex.strip_prefix('#').unwrap_or(hex);
    let channel = |i: usize| {
        digits
            .get(i..i + 2)
            .and_then(|d| u8::from_str_radix(d, 16).ok())
    };
    match (digits.len(), channel(0), channel(2), channel(4)) {
        (6, Some(r), Some(g), Some(b)) => RGBColor(r, g, b),
        _ => BLACK,
    }
}

/// Escapes text for SVG content (plotters escapes what it writes itself).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Plotters writes no `<title>`: add one, which browsers show as the
/// chart's name and screen readers read.
fn with_title(svg: String, title: &str) -> String {
    let Some(at) = svg
        .find("<svg")
        .and_then(|start| svg[start..].find('>').map(|end| start + end + 1))
    else {
        return svg;
    };
    let mut out = svg;
    out.insert_str(at, &format!("\n<title>{}</title>", escape(title)));
    out
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Box,
    Line { dashed: bool },
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

/// What every chart shares: title, axes, frame, legend, notes.
struct Frame<'a> {
    title: &'a str,
    subtitle: &'a str,
    x_label: String,
    y_label: String,
    x_format: fn(f64) -> String,
    y_format: fn(f64) -> String,
    /// Vertical grid lines at the x ticks (none between bars).
    x_grid: bool,
    /// Extra room under the x axis, for staggered category labels.
    x_room_px: u32,
    legend: Vec<(String, RGBColor, Swatch)>,
    notes: Vec<String>,
}

impl Frame<'_> {
    /// Draws the frame around the axes `x` and `y`, with `plot` drawing the data.
    fn draw(
        &self,
        x: AxisCoord,
        y: AxisCoord,
        plot: impl FnOnce(&mut Chart, &Root) -> Result<(), DrawError>,
    ) -> Result<String, DrawError> {
        let x_axis_px = X_AXIS_PX + self.x_room_px;
        let notes_top_px = TOP_PX + PLOT_HEIGHT_PX + x_axis_px + NOTES_GAP_PX;
        let notes_px = self.notes.len() as u32 * NOTE_LINE_PX;
        let height_px = notes_top_px + notes_px + NOTE_LINE_PX / 2;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (WIDTH_PX, height_px)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_error)?;
            let centre = (WIDTH_PX / 2) as i32;
            let top = Pos::new(HPos::Center, VPos::Top);
            root.draw(&Text::new(
                self.title.to_string(),
                (centre, 14),
                bold_text(16.0).pos(top),
            ))
            .map_err(draw_error)?;
            if !self.subtitle.is_empty() {
                root.draw(&Text::new(
                    self.subtitle.to_string(),
                    (centre, 36),
                    text(12.0, GREY_TEXT).pos(top),
                ))
                .map_err(draw_error)?;
            }
            let mut chart = ChartBuilder::on(&root)
                .margin_top(TOP_PX)
                .margin_right(RIGHT_PX)
                .margin_bottom(height_px - notes_top_px + NOTES_GAP_PX)
                .margin_left(LEFT_MARGIN_PX)
                .x_label_area_size(x_axis_px)
                .y_label_area_size(LEFT_PX - LEFT_MARGIN_PX)
                .build_cartesian_2d(x, y)
                .map_err(draw_error)?;
            let x_format = |v: &f64| (self.x_format)(*v);
            let y_format = |v: &f64| (self.y_format)(*v);
            let mut mesh = chart.configure_mesh();
            mesh.bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .axis_style(INK)
                .label_style(text(12.0, BLACK))
                .axis_desc_style(text(12.0, BLACK))
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .x_label_formatter(&x_format)
                .y_label_formatter(&y_format);
            if !self.x_grid {
                mesh.disable_x_mesh();
            }
            mesh.draw().map_err(draw_error)?;
            plot(&mut chart, &root)?;
            let (xs, ys) = chart.plotting_area().get_pixel_range();
            // The plot's border, drawn after the data so it stays on top.
            root.draw(&Rectangle::new(
                [(xs.start, ys.start), (xs.end, ys.end)],
                INK.stroke_width(1),
            ))
            .map_err(draw_error)?;
            self.draw_legend(&root, (xs.end + 18, ys.start + 8))?;
            for (i, note) in self.notes.iter().enumerate() {
                let y = notes_top_px + i as u32 * NOTE_LINE_PX + 4;
                root.draw(&Text::new(
                    note.clone(),
                    (xs.start, y as i32),
                    text(11.0, GREY_TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(draw_error)?;
            }
            root.present().map_err(draw_error)?;
        }
        Ok(with_title(out, self.title))
    }

    /// Legend entries right of the plot: a swatch (a box for bars, a line
    /// for lines) and a name. Drawn here rather than with plotters' series
    /// labels, which stay inside the plot area and would cover data.
    fn draw_legend(&self, root: &Root, (x, top): (i32, i32)) -> Result<(), DrawError> {
        for (i, (name, colour, swatch)) in self.legend.iter().enumerate() {
            let y = top + i as i32 * 20;
            let middle = y + 6;
            match swatch {
                Swatch::Box => {
                    root.draw(&Rectangle::new([(x, y), (x + 12, y + 12)], colour.filled()))
                }
                Swatch::Line { dashed: true } => root.draw(&DashedPathElement::new(
                    vec![(x - 2, middle), (x + 14, middle)],
                    5,
                    3,
                    colour.stroke_width(2),
                )),
                Swatch::Line { dashed: false } => root.draw(&PathElement::new(
                    vec![(x - 2, middle), (x + 14, middle)],
                    colour.stroke_width(2),
                )),
            }
            .map_err(draw_error)?;
            root.draw(&Text::new(
                name.clone(),
                (x + 20, middle),
                text(12.0, BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(draw_error)?;
        }
        Ok(())
    }
}

/// A centred message where the data would go.
fn draw_empty(chart: &Chart, root: &Root, message: &str) -> Result<(), DrawError> {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    root.draw(&Text::new(
        message.to_string(),
        ((xs.start + xs.end) / 2, (ys.start + ys.end) / 2),
        text(12.0, GREY_TEXT).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_error)
}

impl LineChart {
    pub fn to_svg(&self) -> Result<String, DrawError> {
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
        let x_span = Span::fit(&self.x, &xs, false);
        let y_span = Span::fit(&self.y, &ys, false);
        let mut hidden = 0;
        let plotted: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                let mut points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| {
                        let ok = x_span.is_some_and(|r| r.contains(*x))
                            && y_span.is_some_and(|r| r.contains(*y));
                        hidden += usize::from(!ok);
                        ok
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                points
            })
            .collect();
        let mut notes = self.notes.clone();
        notes.extend(hidden_note(hidden));
        let frame = Frame {
            title: &self.title,
            subtitle: &self.subtitle,
            x_label: axis_label(&self.x),
            y_label: axis_label(&self.y),
            x_format: self.x.format,
            y_format: self.y.format,
            x_grid: true,
            x_room_px: 0,
            legend: self
                .series
                .iter()
                .map(|s| {
                    let swatch = Swatch::Line { dashed: s.dashed };
                    (s.name.clone(), rgb(&s.colour), swatch)
                })
                .collect(),
            notes,
        };
        let (Some(xr), Some(yr)) = (x_span, y_span) else {
            let (x, y) = (AxisCoord::bare(0.0, 1.0), AxisCoord::bare(0.0, 1.0));
            return frame.draw(x, y, |chart, root| {
                draw_empty(chart, root, "no data to plot")
            });
        };
        let (x, y) = (AxisCoord::new(&self.x, xr), AxisCoord::new(&self.y, yr));
        frame.draw(x, y, |chart, _| {
            for (series, points) in self.series.iter().zip(plotted) {
                let colour = rgb(&series.colour);
                let line = colour.stroke_width(2);
                if points.len() >= 2 && series.dashed {
                    // Dashes end on whole pixels: short ones would wobble.
                    let path = DashedPathElement::new(points.clone(), 9, 5, line);
                    chart.draw_series([path]).map_err(draw_error)?;
                } else if points.len() >= 2 {
                    let path = PathElement::new(points.clone(), line);
                    chart.draw_series([path]).map_err(draw_error)?;
                }
                let markers = points.iter().map(|p| Circle::new(*p, 3, colour.filled()));
                chart.draw_series(markers).map_err(draw_error)?;
            }
            Ok(())
        })
    }
}

impl BarChart {
    pub fn to_svg(&self) -> Result<String, DrawError> {
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .collect();
        let span = Span::fit(&self.y, &values, true);
        let categories = self.categories.len().max(1);
        let band_px = f64::from(WIDTH_PX - LEFT_PX - RIGHT_PX) / categories as f64;
        let longest_px = self
            .categories
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0) as f64
            * CHAR_PX;
        // Labels too long for their band alternate between rows, so that
        // each has the room of two (or three) bands.
        let rows = (longest_px / (band_px * 0.95)).ceil().clamp(1.0, 3.0) as usize;
        let mut notes = self.notes.clone();
        if let Some(r) = &span {
            notes.extend(hidden_note(
                values.iter().filter(|v| !r.contains(**v)).count(),
            ));
        }
        let frame = Frame {
            title: &self.title,
            subtitle: &self.subtitle,
            x_label: self.x_label.clone(),
            y_label: axis_label(&self.y),
            x_format: fmt_si,
            y_format: self.y.format,
            x_grid: false,
            x_room_px: (rows as u32 - 1) * CATEGORY_ROW_PX,
            legend: self
                .series
                .iter()
                .map(|s| (s.name.clone(), rgb(&s.colour), Swatch::Box))
                .collect(),
            notes,
        };
        let x = AxisCoord::bare(0.0, categories as f64);
        let y = match span {
            Some(r) => AxisCoord::new(&self.y, r),
            None => AxisCoord::bare(0.0, 1.0),
        };
        frame.draw(x, y, |chart, root| {
            let (_, ys) = chart.plotting_area().get_pixel_range();
            for (i, category) in self.categories.iter().enumerate() {
                let (cx, _) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
                let row = (i % rows) as i32;
                root.draw(&Text::new(
                    category.clone(),
                    (cx, ys.end + 8 + row * CATEGORY_ROW_PX as i32),
                    text(12.0, BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(draw_error)?;
            }
            let Some(r) = span else {
                return draw_empty(chart, root, "no data to plot");
            };
            let base = match r.scale {
                Scale::Linear => 0.0f64.clamp(r.lo, r.hi),
                Scale::Log => r.lo,
            };
            let bar_width = 0.8 / self.series.len().max(1) as f64;
            for (si, series) in self.series.iter().enumerate() {
                let fill = rgb(&series.colour).filled();
                let bars = series.values.iter().enumerate().filter_map(|(ci, value)| {
                    let v = value.filter(|v| r.contains(*v))?;
                    let left = ci as f64 + 0.1 + bar_width * si as f64;
                    Some(Rectangle::new([(left, base), (left + bar_width, v)], fill))
                });
                chart.draw_series(bars).map_err(draw_error)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let axis = Axis::new("y", Scale::Log);
        let r = Span::fit(&axis, &[3.0, 4000.0], false).unwrap();
        assert_eq!((r.lo, r.hi), (2.0, 5000.0));
        assert_eq!(r.ticks(None), vec![10.0, 100.0, 1000.0]);
    }

    #[test]
    fn linear_ticks_are_nice_steps() {
        let axis = Axis::new("y", Scale::Linear);
        let r = Span::fit(&axis, &[3.0, 47.0], true).unwrap();
        assert_eq!((r.lo, r.hi), (0.0, 50.0));
        assert_eq!(r.ticks(None), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
    }

    #[test]
    fn byte_axes_tick_at_powers_of_two() {
        let axis = Axis::bytes("b", Scale::Log);
        let r = Span::fit(&axis, &[12_000.0, 900_000.0], true).unwrap();
        assert_eq!((r.lo, r.hi), (8192.0, 1_048_576.0));
        let ticks: Vec<f64> = (13..=20).map(|e| 2f64.powi(e)).collect();
        assert_eq!(r.ticks(None), ticks);
        assert_eq!(nice_step(200_000.0, true), 256.0 * 1024.0);
    }

    #[test]
    fn colours_parse_and_bad_ones_draw_black() {
        assert_eq!(rgb("#4e79a7"), RGBColor(0x4e, 0x79, 0xa7));
        assert_eq!(rgb("red"), BLACK);
        assert_eq!(rgb("#12345"), BLACK);
    }

    fn line_chart(points: Vec<(f64, f64)>) -> LineChart {
        LineChart {
            title: "a < b & c".into(),
            subtitle: "one setting".into(),
            x: Axis::bytes("size", Scale::Log).with_ticks(vec![16.0, 1024.0, 1_048_576.0], 9),
            y: Axis::new("rate", Scale::Log),
            series: vec![Series {
                name: "\"s\"".into(),
                colour: "#4e79a7".into(),
                dashed: false,
                points,
            }],
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn text_is_drawn_as_svg_text_and_escaped() {
        let svg = line_chart(vec![(16.0, 1.0), (1024.0, 10.0), (1_048_576.0, 0.0)])
            .to_svg()
            .unwrap();
        assert!(svg.trim_start().starts_with("<svg"));
        assert!(svg.contains("<title>a &lt; b &amp; c</title>"));
        // No font files: text stays text, in a font family the viewer has.
        assert!(svg.contains("<text") && svg.contains("font-family=\"DejaVu Sans"));
        for shown in [
            "a &lt; b &amp; c",
            "one setting",
            "&quot;s&quot;",
            "16 B",
            "1 KiB",
            "1 MiB",
            "size (log scale)",
            "rate (log scale)",
            "a note",
            "not shown",
        ] {
            assert!(svg.contains(shown), "{shown} is not drawn");
        }
    }

    #[test]
    fn nothing_to_place_says_so_and_keeps_the_legend() {
        let svg = line_chart(vec![(16.0, 0.0), (1024.0, -1.0)])
            .to_svg()
            .unwrap();
        assert!(svg.contains("no data to plot"));
        assert!(svg.contains("&quot;s&quot;"));
        assert!(svg.contains("2 value(s) at or below zero"));
    }

    #[test]
    fn bars_draw_every_category_and_series() {
        let chart = BarChart {
            title: "t".into(),
            subtitle: String::new(),
            x_label: "stack".into(),
            categories: vec!["a-rather-long-stack-name*".into(), "b".into()],
            y: Axis::bytes("bytes", Scale::Linear),
            series: vec![
                BarSeries {
                    name: "first".into(),
                    colour: "#4e79a7".into(),
                    values: vec![Some(1024.0), None],
                },
                BarSeries {
                    name: "second".into(),
                    colour: "#f28e2b".into(),
                    values: vec![Some(2048.0), Some(512.0)],
                },
            ],
            notes: vec![],
        };
        let svg = chart.to_svg().unwrap();
        for shown in [
            "a-rather-long-stack-name*",
            "first",
            "second",
            "2 KiB",
            "stack",
        ] {
            assert!(svg.contains(shown), "{shown} is not drawn");
        }
        // The second series: two bars and its legend box.
        assert_eq!(svg.matches("fill=\"#F28E2B\"").count(), 3);
    }
}
