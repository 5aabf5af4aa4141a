//! The report's summary as an SVG bar chart (`report.svg`): valid SQL %,
//! correct %, then the share of items in each error category.

use plotters::prelude::*;

use super::report::Report;
use super::run::Category;
use crate::error::{Error, Result};

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::invalid("chart", e.to_string())
}

/// The bars: label and percentage of graded items.
pub fn bars(report: &Report) -> Vec<(String, f64)> {
    let s = &report.summary;
    let mut bars = vec![
        ("valid SQL".to_string(), s.valid_sql_pct),
        ("correct".to_string(), s.execution_accuracy_pct),
    ];
    for c in Category::ALL {
        if c == Category::Correct {
            continue;
        }
        if let Some(&n) = s.by_category.get(c.name()) {
            let pct = if s.items == 0 {
                0.0
            } else {
                100.0 * n as f64 / s.items as f64
            };
            bars.push((c.name().replace('_', " "), pct));
        }
    }
    bars
}

/// Renders the chart as an SVG document.
pub fn summary_svg(report: &Report) -> Result<String> {
    let bars = bars(report);
    let mut svg = String::new();
    {
        let width = 140 + 90 * bars.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let title = format!(
            "{} — {} items, grammar {}",
            report.config.model, report.summary.items, report.config.grammar
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..100.0)
            .map_err(chart_error)?;
        let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("% of items")
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let color = if i < 2 { BLUE.mix(0.7) } else { RED.mix(0.5) };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(chart_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    format!("{v:.1}%"),
                    (SegmentValue::CenterOf(i), (*v + 6.0).min(98.0)),
                    ("sans-serif", 13),
                )
            }))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::{summarize, EvalConfig};
    use crate::eval::run::ItemResult;

    #[test]
    fn chart_has_a_bar_per_figure_and_category() {
        let item = |i: usize, ok: bool, category| ItemResult {
            index: i,
            question: "q".into(),
            db: "d".into(),
            gold_sql: "SELECT 1".into(),
            sql: "SELECT 1".into(),
            reply: "SELECT 1".into(),
            valid_sql: true,
            execution_match: ok,
            category,
            error: None,
            generated_tokens: 1,
            latency_ms: 1.0,
            decode_ms: 1.0,
            decode_steps: 1,
            tags: vec![],
            attempts: 1,
            first_attempt: None,
        };
        let items = vec![
            item(0, true, Category::Correct),
            item(1, false, Category::WrongResult),
            item(2, false, Category::WrongResult),
            item(3, false, Category::EmptyResult),
        ];
        let report = Report {
            config: EvalConfig {
                tool_version: "0".into(),
                model: "m.gguf".into(),
                model_fingerprint: String::new(),
                prompt: "default".into(),
                prompt_hash: String::new(),
                grammar: "schema".into(),
                sampling: serde_json::Value::Null,
                set: "s".into(),
                set_hash: String::new(),
                db: None,
                db_dir: None,
                limit: None,
                sample_seed: None,
                retries: 0,
                adapters: vec![],
                schema_budget: None,
                retrieval: None,
            },
            summary: summarize(&items, 0),
            items,
            broken: vec![],
        };
        let b = bars(&report);
        let labels: Vec<&str> = b.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            ["valid SQL", "correct", "wrong result", "empty result"]
        );
        assert_eq!(b[1].1, 25.0);
        assert_eq!(b[2].1, 50.0);
        let svg = summary_svg(&report).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("wrong result") && svg.contains("25.0%"),
            "{svg}"
        );
    }
}
