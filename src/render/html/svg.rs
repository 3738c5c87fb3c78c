//! Charts as inline SVG, drawn here: no script, no external file. Colours
//! come from the page's CSS classes (`s1`…`s6`, `slo`, `band`), so light,
//! dark and print schemes restyle them. Every text is escaped.

use std::fmt::Write as _;

use super::esc;
use crate::render::short_number as short;

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 36.0;

/// Points drawn per series at most: long runs are cut into buckets that keep
/// each bucket's lowest and highest point, so spikes survive.
pub const MAX_POINTS: usize = 600;

/// One line.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// In the legend (none when empty).
    pub name: String,
    /// x, y; `None` breaks the line.
    pub points: Vec<(f64, Option<f64>)>,
    /// Colour class, `s1`…`s6`.
    pub class: &'static str,
    /// Drawn dashed (a baseline, an intent).
    pub dashed: bool,
    /// Dots at the points (few points, or a scatter).
    pub dots: bool,
}

/// A shaded span of x with a label (a stage).
#[derive(Debug, Clone)]
pub struct Band {
    /// From x.
    pub from: f64,
    /// To x.
    pub to: f64,
    /// Its name.
    pub label: String,
}

/// A horizontal reference line (an objective).
#[derive(Debug, Clone)]
pub struct Rule {
    /// At y.
    pub y: f64,
    /// Its name.
    pub label: String,
}

/// A vertical marker (a knee, a capacity).
#[derive(Debug, Clone)]
pub struct Marker {
    /// At x.
    pub x: f64,
    /// Its name.
    pub label: String,
}

/// A line chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Shaded spans.
    pub bands: Vec<Band>,
    /// Objectives.
    pub rules: Vec<Rule>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
}

/// At most `max` points of `points` (in x order), keeping in every bucket
/// of x its lowest and highest point, in their order; gaps stay gaps.
pub fn downsample(points: &[(f64, Option<f64>)], max: usize) -> Vec<(f64, Option<f64>)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(per) {
        let real: Vec<(usize, f64)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, (_, y))| y.filter(|y| y.is_finite()).map(|y| (i, y)))
            .collect();
        if real.is_empty() {
            out.push((chunk[0].0, None));
            continue;
        }
        let lo = real.iter().min_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let hi = real.iter().max_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        let mut keep = [lo, hi];
        keep.sort_by_key(|k| k.0);
        for (i, y) in keep.iter().copied() {
            if out
                .last()
                .is_some_and(|(x, _): &(f64, Option<f64>)| *x == chunk[i].0)
            {
                continue;
            }
            out.push((chunk[i].0, Some(y)));
        }
    }
    out
}

/// Round tick steps: 1, 2 or 5 × 10^k, about `n` of them over `span`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(t);
        t += step;
    }
    out
}

struct Scale {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn x(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0).max(1e-12) * (W - LEFT - RIGHT)
    }
    fn y(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y0) / (self.y1 - self.y0).max(1e-12) * (H - TOP - BOTTOM)
    }
}

/// Horizontal grid lines at round values, labelled on the left.
fn y_grid(o: &mut String, sc: &Scale) {
    for t in ticks(sc.y0, sc.y1, 5) {
        let y = sc.y(t);
        let _ = write!(
            o,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(t)
        );
    }
}

impl Chart {
    /// Whether any series has a point to draw.
    pub fn has_data(&self) -> bool {
        self.series
            .iter()
            .any(|s| s.points.iter().any(|(_, y)| y.is_some_and(f64::is_finite)))
    }

    fn scale(&self) -> Scale {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| [b.from, b.to]))
            .chain(self.markers.iter().map(|m| m.x));
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in xs.filter(|x| x.is_finite()) {
            x0 = x0.min(x);
            x1 = x1.max(x);
        }
        let mut y1 = 0f64;
        for y in self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .filter(|y| y.is_finite())
        {
            y1 = y1.max(y);
        }
        // An objective near the data joins the scale; one far above it
        // would flatten the data, so it is drawn at the top edge instead.
        for r in &self.rules {
            if r.y.is_finite() && (y1 <= 0.0 || r.y <= y1 * 2.0) {
                y1 = y1.max(r.y);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        Scale {
            x0,
            x1,
            y0: 0.0,
            y1: if y1 > 0.0 { y1 * 1.08 } else { 1.0 },
        }
    }

    /// The chart as an `<svg>` element.
    // Long by design: one chart drawn back to front (frame, grid and ticks,
    // bands, series, markers, legend), each layer a few lines sharing the
    // scales computed first.
    pub fn svg(&self) -> String {
        let sc = self.scale();
        let mut o = String::with_capacity(8192);
        let _ = write!(
            o,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
            esc(&self.title),
            esc(&self.title)
        );
        let _ = write!(
            o,
            r#"<text class="title" x="{LEFT}" y="16">{}</text>"#,
            esc(&self.title)
        );
        for b in &self.bands {
            let (a, z) = (sc.x(b.from), sc.x(b.to));
            let _ = write!(
                o,
                r#"<rect class="band" x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.1}"><title>{}</title></rect><text class="band-label" x="{:.1}" y="{:.1}">{}</text>"#,
                (z - a).max(0.0),
                H - TOP - BOTTOM,
                esc(&b.label),
                a + 3.0,
                TOP + 11.0,
                esc(&b.label)
            );
        }
        // Axes and grid.
        y_grid(&mut o, &sc);
        for t in ticks(sc.x0, sc.x1, 8) {
            let x = sc.x(t);
            let _ = write!(
                o,
                r#"<text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                H - BOTTOM + 15.0,
                short(t)
            );
        }
        let _ = write!(
            o,
            r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="label" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            W - RIGHT,
            H - BOTTOM,
            H - BOTTOM,
            (LEFT + W - RIGHT) / 2.0,
            H - 4.0,
            esc(&self.x_label),
            (TOP + H - BOTTOM) / 2.0,
            esc(&self.y_label)
        );
        let mut used: Vec<f64> = Vec::new();
        for r in &self.rules {
            let above = r.y > sc.y1;
            let y = sc.y(r.y.min(sc.y1));
            // Labels that would overlap are moved down a line.
            let mut label_y = if above { y + 12.0 } else { y - 4.0 };
            while used.iter().any(|u| (u - label_y).abs() < 11.0) {
                label_y += 12.0;
            }
            used.push(label_y);
            let label = if above {
                format!("{} ↑ (above the scale)", r.label)
            } else {
                r.label.clone()
            };
            let _ = write!(
                o,
                r#"<line class="slo" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"><title>{}</title></line><text class="slo-label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                W - RIGHT,
                esc(&label),
                W - RIGHT - 2.0,
                label_y,
                esc(&label)
            );
        }
        for m in &self.markers {
            let x = sc.x(m.x);
            let _ = write!(
                o,
                r#"<line class="marker" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"><title>{}</title></line><text class="marker-label" x="{:.1}" y="{:.1}">{}</text>"#,
                H - BOTTOM,
                esc(&m.label),
                x + 3.0,
                TOP + 24.0,
                esc(&m.label)
            );
        }
        for s in &self.series {
            let pts = downsample(&s.points, MAX_POINTS);
            let mut d = String::with_capacity(pts.len() * 14);
            let mut pen = false;
            for (x, y) in &pts {
                match y.filter(|y| y.is_finite()) {
                    Some(y) => {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1}",
                            if pen { "L" } else { "M" },
                            sc.x(*x),
                            sc.y(y)
                        );
                        pen = true;
                    }
                    None => pen = false,
                }
            }
            let dash = if s.dashed { " dashed" } else { "" };
            let _ = write!(
                o,
                r#"<path class="line {}{dash}" d="{d}"><title>{}</title></path>"#,
                s.class,
                esc(&s.name)
            );
            if s.dots || pts.len() <= 60 {
                for (x, y) in &pts {
                    if let Some(y) = y.filter(|y| y.is_finite()) {
                        let _ = write!(
                            o,
                            r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="2.6"><title>{}: {} at {}</title></circle>"#,
                            s.class,
                            sc.x(*x),
                            sc.y(y),
                            esc(&s.name),
                            short(y),
                            short(*x)
                        );
                    }
                }
            }
        }
        // Legend, top right (a single line is named by the title).
        let mut x = W - RIGHT;
        let legend = if self.series.len() > 1 {
            &self.series[..]
        } else {
            &[]
        };
        // A line without a name (one more piece of a named one) has no entry.
        for s in legend.iter().rev().filter(|s| !s.name.is_empty()) {
            let w = 22.0 + 6.5 * s.name.chars().count() as f64;
            x -= w;
            let _ = write!(
                o,
                r#"<line class="line {}{}" x1="{:.1}" x2="{:.1}" y1="12" y2="12"/><text class="legend" x="{:.1}" y="16">{}</text>"#,
                s.class,
                if s.dashed { " dashed" } else { "" },
                x,
                x + 14.0,
                x + 17.0,
                esc(&s.name)
            );
        }
        o.push_str("</svg>");
        o
    }
}

/// Bars per category, one colour per series.
#[derive(Debug, Clone, Default)]
pub struct Bars {
    /// Above the plot.
    pub title: String,
    /// Beside the y axis.
    pub y_label: String,
    /// Category names (steps).
    pub categories: Vec<String>,
    /// Name, class, one value per category.
    pub series: Vec<(String, &'static str, Vec<Option<f64>>)>,
}

impl Bars {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.2.iter().flatten())
            .copied()
            .filter(|v| v.is_finite())
            .fold(0f64, f64::max);
        let sc = Scale {
            x0: 0.0,
            x1: 1.0,
            y0: 0.0,
            y1: if max > 0.0 { max * 1.1 } else { 1.0 },
        };
        let mut o = String::with_capacity(4096);
        let _ = write!(
            o,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title><text class="title" x="{LEFT}" y="16">{}</text>"#,
            esc(&self.title),
            esc(&self.title),
            esc(&self.title)
        );
        y_grid(&mut o, &sc);
        let n = self.categories.len().max(1) as f64;
        let slot = (W - LEFT - RIGHT) / n;
        let k = self.series.len().max(1) as f64;
        let bar = (slot * 0.7 / k).min(60.0);
        for (ci, cat) in self.categories.iter().enumerate() {
            let x0 = LEFT + slot * ci as f64 + (slot - bar * k) / 2.0;
            for (si, (name, class, vals)) in self.series.iter().enumerate() {
                if let Some(v) = vals.get(ci).copied().flatten().filter(|v| v.is_finite()) {
                    let y = sc.y(v);
                    let _ = write!(
                        o,
                        r#"<rect class="bar {class}" x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}"><title>{} · {}: {}</title></rect>"#,
                        x0 + bar * si as f64,
                        (H - BOTTOM - y).max(0.0),
                        esc(cat),
                        esc(name),
                        short(v)
                    );
                }
            }
            let label: String = cat.chars().take(18).collect();
            let _ = write!(
                o,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + slot * (ci as f64 + 0.5),
                H - BOTTOM + 15.0,
                esc(&label)
            );
        }
        let _ = write!(
            o,
            r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text class="label" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            W - RIGHT,
            H - BOTTOM,
            H - BOTTOM,
            (TOP + H - BOTTOM) / 2.0,
            esc(&self.y_label)
        );
        let mut x = W - RIGHT;
        for (name, class, _) in self.series.iter().rev() {
            x -= 22.0 + 6.5 * name.chars().count() as f64;
            let _ = write!(
                o,
                r#"<rect class="bar {class}" x="{x:.1}" y="6" width="12" height="10"/><text class="legend" x="{:.1}" y="16">{}</text>"#,
                x + 16.0,
                esc(name)
            );
        }
        o.push_str("</svg>");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_spike_and_the_gaps_and_bounds_the_points() {
        let mut pts: Vec<(f64, Option<f64>)> =
            (0..10_000).map(|i| (i as f64, Some(10.0))).collect();
        pts[7_777].1 = Some(900.0);
        pts[100].1 = None;
        let d = downsample(&pts, 600);
        assert!(d.len() <= 600, "{}", d.len());
        assert!(d.iter().any(|p| p.1 == Some(900.0)));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        // Few points are drawn as they are.
        assert_eq!(downsample(&pts[..50], 600).len(), 50);
    }

    #[test]
    fn ticks_are_round_and_cover_the_span() {
        assert_eq!(ticks(0.0, 100.0, 5), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 7.0, 5), [0.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn a_chart_draws_a_path_per_series_and_escapes_its_names() {
        let c = Chart {
            title: "TTFT <script>".into(),
            series: vec![Series {
                name: "p50 & \"x\"".into(),
                points: vec![
                    (0.0, Some(1.0)),
                    (1.0, None),
                    (2.0, Some(3.0)),
                    (3.0, Some(4.0)),
                ],
                class: "s1",
                ..Series::default()
            }],
            ..Chart::default()
        };
        let svg = c.svg();
        assert!(svg.contains("TTFT &lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("p50 &amp; &quot;x&quot;"));
        // The gap starts a new sub-path.
        let d = svg.split(r#"d=""#).nth(1).expect("a path");
        assert_eq!(d.split('"').next().expect("d").matches('M').count(), 2);
    }
}
