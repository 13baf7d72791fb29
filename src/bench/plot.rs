//! `bench --plot FILE.svg`: objects Ready over time for each run, against its quota bound.
//!
//! Runs of different sizes share one picture, so the y axis is the share of the run's objects
//! Ready for the new generation; each run's quota bound is a dashed vertical line of its colour
//! (no run can be all Ready before it).

use std::path::Path;

use plotters::prelude::*;

/// One run's curve: `(seconds since the flip, objects Ready)`, its size and its bound.
pub(super) struct Curve {
    pub label: String,
    pub objects: usize,
    pub bound_s: f64,
    pub points: Vec<(f64, usize)>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Writes the SVG; the error names the file.
pub(super) fn draw(path: &Path, curves: &[Curve]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let x_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0).chain([c.bound_s]))
        .fold(1.0_f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "EcsInstances Ready after every spec is flipped (dashed: quota bound)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..105.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the flip")
        .y_desc("% of the run's objects Ready")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, curve) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let total = curve.objects.max(1) as f64;
        let points = curve
            .points
            .iter()
            .map(|(t, ready)| (*t, 100.0 * *ready as f64 / total));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(curve.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(
                [(curve.bound_s, 0.0), (curve.bound_s, 100.0)],
                6,
                4,
                colour.stroke_width(1),
            ))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_run_and_its_bound() {
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flip.svg");
        let curves = [
            Curve {
                label: "10000 objects, batching on".into(),
                objects: 10_000,
                bound_s: 20.0,
                points: vec![(0.0, 0), (10.0, 4_000), (21.5, 10_000)],
            },
            Curve {
                label: "300 objects, batching off".into(),
                objects: 300,
                bound_s: 60.0,
                points: vec![(0.0, 0), (60.0, 300)],
            },
        ];
        draw(&path, &curves).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("10000 objects, batching on"));
        assert!(svg.contains("300 objects, batching off"));
        // Two curves (polylines) and two bounds (dashes: many short lines).
        assert!(svg.matches("<polyline").count() >= 2);
    }
}
