//! discussion.md quotes figures from the committed reference run; none may
//! be typed by hand. Every number in it that carries a unit must be found
//! in target-reports/results.json (after rounding as quoted), as a measured
//! value or a parameter of one, and the commit it names must be the one the
//! results were measured at.

use std::path::Path;

use wsbench::results::ResultsFile;

/// Units after which a number is a measured figure.
const UNITS: [&str; 9] = [
    "µs", "us", "ns", "MiB/s", "msgs/s", "KiB", "bytes", "conns/s", "allocs",
];

/// Numbers quoted with a unit, as (text, value, unit).
fn quoted_figures(text: &str) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            && (i == 0
                || !(chars[i - 1].is_alphanumeric()
                    || chars[i - 1] == '.'
                    || chars[i - 1] == '-'
                    || chars[i - 1] == '/'));
        if !starts_number {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == ',') {
            i += 1;
        }
        let number: String = chars[start..i].iter().filter(|c| **c != ',').collect();
        let number = number.trim_end_matches('.').to_string();
        let rest: String = chars[i..chars.len().min(i + 8)].iter().collect();
        let rest = rest.trim_start_matches(' ');
        if let Some(unit) = UNITS.iter().find(|u| rest.starts_with(**u)) {
            if let Ok(value) = number.parse::<f64>() {
                out.push((number.clone(), value, unit.to_string()));
            }
        }
    }
    out
}

/// The value as the results hold it, in the quoted unit.
fn matches(value: f64, quoted: &str, unit: &str, results: &[f64]) -> bool {
    let decimals = quoted.split('.').nth(1).map_or(0, |d| d.len()) as i32;
    let step = 10f64.powi(-decimals);
    let scale = if unit == "KiB" { 1024.0 } else { 1.0 };
    results.iter().any(|&r| {
        let r = r / scale;
        // Rounded as quoted; large integers may be quoted to 3 significant
        // figures (e.g. 41,200 msgs/s).
        (r - value).abs() <= step / 2.0 + 1e-9
            || (value >= 1000.0 && (r - value).abs() / value <= 0.005)
    })
}

#[test]
fn every_quoted_figure_comes_from_the_committed_results() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let discussion =
        std::fs::read_to_string(root.join("discussion.md")).expect("discussion.md exists");
    let results =
        ResultsFile::load(&root.join("target-reports/results.json")).expect("committed results");
    // A figure is a measured value or one of the parameters a value was
    // measured at (a message size, a connection count), both recorded in
    // the results.
    let values: Vec<f64> = results
        .measurements()
        .flat_map(|m| std::iter::once(m.value).chain(m.params.values().filter_map(|p| p.as_f64())))
        .collect();
    let figures = quoted_figures(&discussion);
    assert!(!figures.is_empty(), "discussion.md quotes no figures");
    let missing: Vec<String> = figures
        .iter()
        .filter(|(quoted, value, unit)| !matches(*value, quoted, unit, &values))
        .map(|(q, _, u)| format!("{q} {u}"))
        .collect();
    assert!(
        missing.is_empty(),
        "figures in discussion.md not in target-reports/results.json: {missing:?}"
    );

    let commits: Vec<&str> = results
        .groups
        .values()
        .map(|g| g.run.commit.as_str())
        .collect();
    assert!(
        commits
            .iter()
            .any(|c| discussion.contains(&c[..12.min(c.len())])),
        "discussion.md must name the commit of the run it discusses (one of {commits:?})"
    );
}

#[test]
fn figure_scanner_finds_numbers_with_units() {
    let f = quoted_figures("p50 is 23.4 µs (1,024 bytes) at 41,200 msgs/s; 3 stacks, v0.8");
    let got: Vec<(String, String)> = f.into_iter().map(|(q, _, u)| (q, u)).collect();
    assert_eq!(
        got,
        vec![
            ("23.4".into(), "µs".into()),
            ("1024".into(), "bytes".into()),
            ("41200".into(), "msgs/s".into())
        ]
    );
}
