//! Figures and how they are shown: a table row as each figure arrives, and one JSON line
//! per figure for programs.
//!
//! Every figure that can have one carries the baseline measured in the same run, on the
//! same server, and the ratio between the two; these machines are too noisy for bare
//! numbers to mean much from one run to the next.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

use crate::stats::Latencies;

/// What a figure is compared with, measured in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// What the baseline measures, e.g. "raw INSERT, 16 clients".
    pub name: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

/// A goal a figure should reach.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(tag = "kind", content = "bound", rename_all = "snake_case")]
pub enum Target {
    /// value ÷ baseline at least this.
    RatioAtLeast(f64),
    /// value at least this.
    AtLeast(f64),
    /// value at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Self::RatioAtLeast(bound) => ratio.map(|r| r >= bound),
            Self::AtLeast(bound) => Some(value >= bound),
            Self::AtMost(bound) => Some(value <= bound),
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Self::RatioAtLeast(bound) => format!("ratio >= {bound}"),
            Self::AtLeast(bound) => format!(">= {} {unit}", compact(bound)),
            Self::AtMost(bound) => format!("<= {} {unit}", compact(bound)),
        }
    }
}

/// One measured number.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The scenario it belongs to ("commands", "rebuild", ...).
    pub scenario: String,
    /// What was measured, e.g. "own aggregate, 16 clients".
    pub name: String,
    /// Its unit: "commands/s", "ms", "MB", ...
    pub unit: String,
    /// The value.
    pub value: f64,
    /// The same-run baseline, if the figure has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// value ÷ baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The goal, if one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Whether the goal was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// How many operations the figure is made of (commands, events, samples...).
    pub samples: u64,
}

impl Figure {
    /// A figure without baseline or target.
    pub fn new(
        scenario: &str,
        name: impl Into<String>,
        unit: &str,
        value: f64,
        samples: u64,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            name: name.into(),
            unit: unit.to_owned(),
            value,
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            samples,
        }
    }

    /// Pairs it with a same-run baseline.
    pub fn against(mut self, name: impl Into<String>, value: f64) -> Self {
        self.ratio = (value > 0.0).then(|| self.value / value);
        self.baseline = Some(Baseline {
            name: name.into(),
            value,
        });
        self.met = self.target.and_then(|t| t.met(self.value, self.ratio));
        self
    }

    /// Sets its goal.
    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self.met = target.met(self.value, self.ratio);
        self
    }
}

/// The p50 and p99 of `latencies` (ms, from `samples` operations), each beside the same
/// percentile of `baseline`.
pub fn percentile_figures(
    scenario: &str,
    name: &str,
    latencies: &mut Latencies,
    samples: u64,
    baseline_name: &str,
    baseline: &mut Latencies,
) -> [Figure; 2] {
    [50.0, 99.0].map(|p| {
        Figure::new(
            scenario,
            format!("{name}: p{p} latency"),
            "ms",
            latencies.percentile_ms(p),
            samples,
        )
        .against(baseline_name, baseline.percentile_ms(p))
    })
}

/// Collects figures, printing each as a table row on standard output as it arrives.
pub struct Report {
    figures: Mutex<Vec<Figure>>,
    notes: Mutex<Vec<(String, String)>>,
    print: bool,
}

impl Report {
    /// A report that prints rows (`print`) or only collects them.
    pub fn new(print: bool) -> Self {
        if print {
            println!(
                "{:<10} {:<44} {:>12} {:<11} {:<34} {:>8} target",
                "scenario", "figure", "value", "unit", "baseline", "ratio"
            );
        }
        Self {
            figures: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            print,
        }
    }

    /// Records a figure.
    pub fn add(&self, figure: Figure) {
        if self.print {
            println!("{}", row(&figure));
            let _ = std::io::stdout().flush();
        }
        self.figures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(figure);
    }

    /// Prints a note under the table (what a scenario skipped, and why).
    pub fn note(&self, scenario: &str, text: &str) {
        if self.print {
            println!("{scenario:<10} note: {text}");
        }
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((scenario.to_owned(), text.to_owned()));
    }

    /// Every note so far, as (scenario, text).
    pub fn notes(&self) -> Vec<(String, String)> {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every figure recorded so far.
    pub fn figures(&self) -> Vec<Figure> {
        self.figures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One JSON object per line, one line per figure.
    pub fn json_lines(&self) -> String {
        self.figures()
            .iter()
            .map(|f| serde_json::to_string(f).unwrap_or_default() + "\n")
            .collect()
    }
}

fn row(f: &Figure) -> String {
    let baseline = f.baseline.as_ref().map_or(String::new(), |b| {
        format!("{} {}", compact(b.value), truncate(&b.name, 24))
    });
    let ratio = f.ratio.map_or(String::new(), |r| format!("{r:.3}"));
    let target = match (f.target, f.met) {
        (Some(t), Some(met)) => format!(
            "{} {}",
            t.describe(&f.unit),
            if met { "met" } else { "MISSED" }
        ),
        (Some(t), None) => t.describe(&f.unit),
        _ => String::new(),
    };
    format!(
        "{:<10} {:<44} {:>12} {:<11} {:<34} {:>8} {}",
        f.scenario,
        truncate(&f.name, 44),
        compact(f.value),
        f.unit,
        baseline,
        ratio,
        target
    )
}

/// Numbers as people read them: no more than 4 significant digits after the point.
pub fn compact(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_target_follow_the_baseline() {
        let f = Figure::new("commands", "x", "commands/s", 700.0, 10)
            .target(Target::RatioAtLeast(0.7))
            .against("raw", 1000.0);
        assert_eq!(f.ratio, Some(0.7));
        assert_eq!(f.met, Some(true));
        let f = Figure::new("commands", "x", "commands/s", 699.0, 10)
            .against("raw", 1000.0)
            .target(Target::RatioAtLeast(0.7));
        assert_eq!(f.met, Some(false));
    }

    #[test]
    fn a_zero_baseline_has_no_ratio() {
        let f = Figure::new("q", "x", "ms", 3.0, 1)
            .against("none", 0.0)
            .target(Target::RatioAtLeast(1.0));
        assert_eq!(f.ratio, None);
        assert_eq!(f.met, None);
        let f = Figure::new("q", "x", "ms", 3.0, 1).target(Target::AtMost(2.0));
        assert_eq!(f.met, Some(false));
    }

    #[test]
    fn json_lines_are_one_object_per_figure() {
        let report = Report::new(false);
        report.add(Figure::new("a", "one", "ms", 1.0, 1));
        report.add(Figure::new("b", "two", "ms", 2.0, 1).against("base", 4.0));
        let lines = report.json_lines();
        let parsed: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid JSON"))
            .collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1]["ratio"], 0.5);
        assert_eq!(parsed[1]["baseline"]["name"], "base");
    }
}
