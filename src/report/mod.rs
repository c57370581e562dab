//! HTML reports: one self-contained file per run (`marketsim report`) or per diff
//! (`marketsim diff --html`), rendered with minijinja from the templates in `templates/`
//! (compiled into the binary), with Apache ECharts inlined from the copy embedded at build time
//! ([`crate::assets`]) or from a file given with `--echarts`. The run report's script and style
//! are the front end's (`web/src/report.js`, `report.css`), drawn with the views it shares with
//! the live dashboard (`views-format.js`, `views-store.js`, `views-timeseries.js`,
//! `views-tables.js`), inlined from the same table.
//!
//! A report's numbers live in one JSON data block (`<script type="application/json"
//! id="report-data">`); the tables are rendered from the same data, and the charts are drawn
//! from it in the browser. The data block is what the tests snapshot.

pub mod data;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use minijinja::{context, Environment};
use thiserror::Error;

pub use data::{build_report_data, ReportData};

use crate::assets;

const REPORT_TEMPLATE: &str = include_str!("../../templates/report.html");
const DIFF_TEMPLATE: &str = include_str!("../../templates/diff.html");
/// The shared views a run report inlines before its own script, in order.
const SHARED_VIEWS: [&str; 4] = [
    "views-format.js",
    "views-store.js",
    "views-timeseries.js",
    "views-tables.js",
];
const DIFF_SCRIPT: &str = include_str!("../../templates/diff.js");

#[derive(Debug, Error)]
pub enum ReportError {
    /// The ECharts build given with `--echarts` cannot be read as text.
    #[error("cannot read the ECharts build given with --echarts, {path}")]
    EchartsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The report file (or its folder) cannot be written.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rendering the report: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
}

/// The ECharts script a page inlines: the build embedded in the binary, or `explicit` (the
/// `--echarts` option) when given. Read before any other work, so a bad path fails fast.
pub fn echarts_script(explicit: Option<&Path>) -> Result<Cow<'static, str>, ReportError> {
    match explicit {
        None => Ok(Cow::Borrowed(assets::echarts_script())),
        Some(path) => std::fs::read_to_string(path)
            .map(Cow::Owned)
            .map_err(|source| ReportError::EchartsFile {
                path: path.to_path_buf(),
                source,
            }),
    }
}

/// Makes text safe inside a `<script>` element: a literal `</script` would end it early.
pub fn script_safe(text: &str) -> String {
    text.replace("</script", "<\\/script")
        .replace("</SCRIPT", "<\\/SCRIPT")
        .replace("<!--", "<\\!--")
}

/// JSON for a data block; `<`, `>` and `&` are escaped so no sequence can end the element.
pub fn data_block_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The reports' style sheet (shared by the run and diff reports).
fn style() -> &'static str {
    assets::web_source("report.css")
}

/// `1234567` → `1,234,567`: totals read at a glance.
fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        grouped.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn environment() -> Result<Environment<'static>, ReportError> {
    let mut environment = Environment::new();
    environment.add_filter("thousands", thousands);
    environment.add_template("report.html", REPORT_TEMPLATE)?;
    environment.add_template("diff.html", DIFF_TEMPLATE)?;
    Ok(environment)
}

/// Renders the run report, inlining `echarts_script` (see [`echarts_script`]).
pub fn render_run_report(data: &ReportData, echarts_script: &str) -> Result<String, ReportError> {
    let environment = environment()?;
    let template = environment.get_template("report.html")?;
    Ok(template.render(context! {
        data => data,
        data_json => data_block_json(data),
        style => style(),
        echarts => script_safe(echarts_script),
        shared_scripts => SHARED_VIEWS.map(|name| script_safe(assets::web_source(name))),
        script => script_safe(assets::web_source("report.js")),
    })?)
}

/// Renders the diff report from a [`crate::output::diff::DiffReport`] with aligned series,
/// inlining `echarts_script` (see [`echarts_script`]).
pub fn render_diff_report(
    diff: &crate::output::diff::DiffReport,
    echarts_script: &str,
) -> Result<String, ReportError> {
    let environment = environment()?;
    let template = environment.get_template("diff.html")?;
    Ok(template.render(context! {
        diff => diff,
        data_json => data_block_json(diff),
        style => style(),
        echarts => script_safe(echarts_script),
        script => script_safe(DIFF_SCRIPT),
        version => env!("CARGO_PKG_VERSION"),
    })?)
}

/// Writes `text` to `path` through a temporary sibling and a rename, so a reader never sees
/// half a report and a failure leaves the old one in place.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), ReportError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&parent).map_err(io)?;
    // A plain file (not a mkstemp one) so the report gets the usual permissions.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".to_string());
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if let Err(source) = std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        let cases = [0, 7, 999, 1000, 12345, -1234567, 5913964];
        let grouped = cases.map(thousands);
        assert_eq!(
            grouped,
            [
                "0",
                "7",
                "999",
                "1,000",
                "12,345",
                "-1,234,567",
                "5,913,964"
            ]
        );
    }

    #[test]
    fn the_files_a_report_inlines_are_embedded() {
        for name in SHARED_VIEWS.iter().chain(&["report.js", "report.css"]) {
            assert!(!assets::web_source(name).is_empty(), "web/src/{name}");
        }
    }
}
