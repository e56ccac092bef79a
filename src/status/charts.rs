//! Small inline SVG line charts of the sampled history: no image, no external asset, so the
//! page's Content-Security-Policy can forbid both. `status.js` draws the same charts the same
//! way after each refresh.

use std::fmt::Write;

use serde_json::Value;

/// The drawing area, in SVG user units; the page scales it to the column's width.
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 60.0;

/// One line: its legend, the CSS class that colours it, a value per sample (`None`: no data).
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
    pub values: Vec<Option<f64>>,
}

/// The three charts of the page, from the document's `history.samples`.
pub fn all(samples: &[Value]) -> Vec<(&'static str, Vec<Series>)> {
    let pick = |path: &[&str]| -> Vec<Option<f64>> {
        samples
            .iter()
            .map(|s| path.iter().fold(s, |v, key| &v[*key]).as_f64())
            .collect()
    };
    let outcome = |name: &'static str, class: &'static str, label: &str| Series {
        name,
        class,
        values: pick(&["requests_per_second", label]),
    };
    vec![
        (
            "requests/s by outcome",
            vec![
                outcome("forwarded", "ok", "forwarded"),
                outcome("api", "api", "api"),
                outcome("401", "warn", "401"),
                outcome("5xx", "bad", "5xx"),
            ],
        ),
        (
            "latency ms (p50, p99)",
            vec![
                Series {
                    name: "p50",
                    class: "ok",
                    values: pick(&["p50_ms"]),
                },
                Series {
                    name: "p99",
                    class: "warn",
                    values: pick(&["p99_ms"]),
                },
            ],
        ),
        (
            "upstream errors/s",
            vec![Series {
                name: "errors",
                class: "bad",
                values: pick(&["upstream_errors_per_second"]),
            }],
        ),
    ]
}

/// One chart as an `<svg>` element: a polyline per series, scaled to the largest value.
pub fn svg(title: &str, series: &[Series]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    let scale = if max > 0.0 { max } else { 1.0 };
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{}\">",
        super::escape::escape(title)
    );
    for line in series {
        let steps = line.values.len().saturating_sub(1).max(1) as f64;
        let mut points = String::new();
        for (i, value) in line.values.iter().enumerate() {
            if let Some(v) = value {
                let x = WIDTH * i as f64 / steps;
                let y = HEIGHT - HEIGHT * v / scale;
                let _ = write!(points, "{x:.1},{y:.1} ");
            }
        }
        let _ = write!(
            out,
            "<polyline class=\"line {}\" points=\"{}\"/>",
            line.class,
            points.trim_end()
        );
    }
    out.push_str("</svg>");
    out
}

/// The largest value of a chart, for its caption.
pub fn peak(series: &[Series]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b))
}
