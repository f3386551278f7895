//! The cold-start picture: time to `SERVING` and peak resident memory
//! against the number of keys, replaying the whole log and starting from a
//! snapshot, as one SVG (plotters).

use plotters::prelude::*;

use crate::coldstart::ColdStart;

/// One panel: where, title, unit, the target's line, and (replay, snapshot).
type Panel<'p, 'b> = (
    &'p DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    &'static str,
    &'static str,
    f64,
    Box<dyn Fn(&ColdStart) -> (f64, f64)>,
);

pub fn cold_starts(rows: &[ColdStart], path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(!rows.is_empty(), "nothing to plot");
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    let keys = |r: &ColdStart| r.keys as f64;
    let max_keys = rows.iter().map(keys).fold(1.0, f64::max) * 1.5;
    let min_keys = rows.iter().map(keys).fold(f64::MAX, f64::min) / 1.5;
    let panels: [Panel<'_, '_>; 2] = [
        (
            &left,
            "Time to SERVING",
            "seconds",
            5.0,
            Box::new(|r| (r.replay.0.as_secs_f64(), r.from_snapshot.0.as_secs_f64())),
        ),
        (
            &right,
            "Peak resident memory",
            "MiB",
            400.0 * 1e6 / 1048576.0,
            Box::new(|r| {
                (
                    r.replay.1 as f64 / 1048576.0,
                    r.from_snapshot.1 as f64 / 1048576.0,
                )
            }),
        ),
    ];
    for (area, title, unit, target, value) in panels {
        let top = rows
            .iter()
            .map(|r| {
                let (a, b) = value(r);
                a.max(b)
            })
            .fold(target, f64::max)
            * 2.0;
        let bottom = rows
            .iter()
            .map(|r| {
                let (a, b) = value(r);
                a.min(b)
            })
            .fold(f64::MAX, f64::min)
            .max(1e-3)
            / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((min_keys..max_keys).log_scale(), (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("keys")
            .y_desc(unit)
            .x_label_formatter(&|k| format!("{k:.0}"))
            .draw()?;
        let series = [
            ("replaying the whole log", RED, true),
            ("from a snapshot", BLUE, false),
        ];
        for (label, colour, replay) in series {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| {
                    let (a, b) = value(r);
                    (keys(r), if replay { a } else { b })
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )?;
        }
        chart
            .draw_series(LineSeries::new(
                vec![(min_keys, target), (max_keys, target)],
                BLACK.mix(0.5),
            ))?
            .label("target at 1,000,000 keys")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
