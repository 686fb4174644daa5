//! SVG plots of each role's effect against its baseline.

use plotters::prelude::*;

use super::report::ScenarioReport;

/// Renders the reports as one SVG document (returned as a string; the CLI
/// writes it to `--plot FILE.svg`).
///
/// * One panel per non-scale report: mean completion of the jobs submitted in each half-second,
///   roles vs baseline (a crash shows as a spike and its recovery).
/// * For reports of several sizes (`scale`): messages per node per second vs
///   nodes, roles vs baseline.
pub fn plot_svg(reports: &[ScenarioReport]) -> String {
    let mut out = String::new();
    let series: Vec<&ScenarioReport> = reports
        .iter()
        .filter(|r| !r.details.timeline.is_empty())
        .collect();
    let panels = series.len().max(1) + usize::from(reports.len() > 1);
    let height = 320 * panels as u32;
    {
        let root = SVGBackend::with_string(&mut out, (900, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let areas = root.split_evenly((panels, 1));
        let mut idx = 0;
        for r in &series {
            let area = &areas[idx];
            idx += 1;
            let roles = &r.details.timeline;
            let base = &r.baseline_details.timeline;
            let xmax = roles
                .iter()
                .chain(base.iter())
                .map(|p| p.0)
                .fold(1.0, f64::max);
            let ymax = roles
                .iter()
                .chain(base.iter())
                .map(|p| p.1)
                .fold(1.0, f64::max);
            let caption = format!(
                "{} ({} nodes): mean completion {:.0} ms vs baseline {:.0} ms",
                r.scenario,
                r.figures.nodes,
                r.figures.mean_completion_ms,
                r.baseline.mean_completion_ms
            );
            let Ok(mut chart) = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..xmax * 1.02, 0.0..ymax * 1.1)
            else {
                continue;
            };
            let _ = chart
                .configure_mesh()
                .x_desc("submission time (s)")
                .y_desc("completion (ms)")
                .draw();
            if let Ok(s) = chart.draw_series(LineSeries::new(roles.iter().copied(), &BLUE)) {
                s.label("roles")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
            }
            if let Ok(s) = chart.draw_series(LineSeries::new(base.iter().copied(), &RED)) {
                s.label("baseline")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw();
        }
        if reports.len() > 1 {
            let area = &areas[idx];
            let pts = |f: &dyn Fn(&ScenarioReport) -> f64| -> Vec<(f64, f64)> {
                reports
                    .iter()
                    .map(|r| ((r.figures.nodes as f64).log10(), f(r)))
                    .collect()
            };
            let roles = pts(&|r| r.figures.msgs_per_node_per_sec);
            let base = pts(&|r| r.baseline.msgs_per_node_per_sec);
            let xmin = roles.iter().map(|p| p.0).fold(f64::MAX, f64::min);
            let xmax = roles
                .iter()
                .map(|p| p.0)
                .fold(f64::MIN, f64::max)
                .max(xmin + 0.1);
            let ymax = roles
                .iter()
                .chain(base.iter())
                .map(|p| p.1)
                .fold(1.0, f64::max);
            if let Ok(mut chart) = ChartBuilder::on(area)
                .caption(
                    "messages per node per second vs log10(nodes)",
                    ("sans-serif", 16),
                )
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(xmin - 0.1..xmax + 0.1, 0.0..ymax * 1.3)
            {
                let _ = chart
                    .configure_mesh()
                    .x_desc("log10(nodes)")
                    .y_desc("msgs/node/s")
                    .draw();
                if let Ok(s) = chart.draw_series(LineSeries::new(roles, &BLUE)) {
                    s.label("roles")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
                }
                if let Ok(s) = chart.draw_series(LineSeries::new(base, &RED)) {
                    s.label("baseline")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
                }
                let _ = chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw();
            }
        }
        let _ = root.present();
    }
    out
}
