//! The text rendering of a [`DiffReport`]: the verdict, then what differs, in columns.

use super::*;

/// A bucket value as people read it: counts without decimals, gauges with up to three.
fn format_value(value: Option<f64>) -> String {
    match value {
        None => "none".to_string(),
        Some(v) => format_number(v),
    }
}

fn format_number(value: f64) -> String {
    let rounded = round_to(value, 3);
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        let text = format!("{rounded:.3}");
        text.trim_end_matches('0').to_string()
    }
}

fn format_signed(value: f64) -> String {
    let text = format_number(value);
    if value > 0.0 {
        format!("+{text}")
    } else {
        text
    }
}

fn format_percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn format_tolerance(tolerance: f64) -> String {
    if tolerance == 0.0 {
        "exact comparison".to_string()
    } else {
        let percent = format!("{:.4}", tolerance * 100.0);
        let percent = percent.trim_end_matches('0').trim_end_matches('.');
        format!("tolerance {percent}%")
    }
}

/// "a → b (+d, r%)" for one bucket.
fn format_bucket_change(delta: &BucketDelta) -> String {
    let change = match delta.delta {
        Some(d) => format!(
            "{}, {}",
            format_signed(d),
            format_percent(delta.relative_difference)
        ),
        None => "one has no value".to_string(),
    };
    format!(
        "{} → {} ({change})",
        format_value(delta.a),
        format_value(delta.b)
    )
}

/// Left-aligned columns two spaces apart, each line indented by `indent`.
fn write_columns(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let n_columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n_columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = widths[column].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

impl DiffReport {
    /// Whether the runs count as the same (exit code 0).
    pub fn is_same(&self) -> bool {
        self.verdict.is_same()
    }

    /// The first line: the verdict and what it rests on.
    fn verdict_line(&self) -> String {
        let tolerance = format_tolerance(self.tolerance);
        match self.verdict {
            Verdict::Identical => format!(
                "identical: {} streams, {} buckets, {} external events ({tolerance})",
                self.counts.compared, self.structure.buckets_compared, self.timeline.events_a
            ),
            Verdict::WithinTolerance => format!(
                "identical within {tolerance}: {} of {} streams differ, none beyond it",
                self.counts.within_tolerance, self.counts.compared
            ),
            Verdict::Different => {
                let mut reasons = Vec::new();
                if self.counts.different > 0 {
                    reasons.push(format!(
                        "{} of {} streams",
                        self.counts.different, self.counts.compared
                    ));
                }
                let only_streams =
                    self.structure.streams_only_in_a.len() + self.structure.streams_only_in_b.len();
                if only_streams > 0 {
                    reasons.push(format!("{only_streams} streams in one run only"));
                }
                let only_buckets =
                    self.structure.buckets_only_in_a + self.structure.buckets_only_in_b;
                if only_buckets > 0 {
                    reasons.push(format!("{only_buckets} buckets in one run only"));
                }
                if !self.structure.series_compared {
                    reasons.push("bucket sizes differ".to_string());
                }
                if self.timeline.n_differences() > 0 {
                    reasons.push(format!("{} external events", self.timeline.n_differences()));
                }
                if let Some(recommendations) = &self.recommendations {
                    if recommendations.n_differences() > 0 {
                        reasons.push(format!(
                            "{} recommendations",
                            recommendations.n_differences()
                        ));
                    }
                }
                format!("different: {} ({tolerance})", reasons.join(", "))
            }
        }
    }

    /// The human summary `marketsim diff` prints: the verdict on the first line, then whether
    /// the scripts differ, then the details.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.verdict_line());
        out.push('\n');
        if self.different_scripts {
            let _ = writeln!(
                out,
                "runs of different scripts: A ran {} (sha256 {}), B ran {} (sha256 {})",
                self.a.script,
                short_hash(&self.a.script_sha256),
                self.b.script,
                short_hash(&self.b.script_sha256)
            );
        }
        for (label, run) in [("A", &self.a), ("B", &self.b)] {
            let _ = writeln!(
                out,
                "{label}  {}  ({}, seed {}, {} from {})",
                run.path, run.name, run.seed, run.duration, run.epoch
            );
        }

        if !self.metadata.is_empty() {
            out.push_str("\nmetadata that differs\n");
            let rows: Vec<Vec<String>> = self
                .metadata
                .iter()
                .map(|d| vec![d.field.clone(), format!("{} → {}", d.a, d.b)])
                .collect();
            write_columns(&mut out, "  ", &rows);
        }

        self.render_structure(&mut out);
        self.render_streams(&mut out);
        self.render_largest_deltas(&mut out);
        self.render_timeline(&mut out);
        self.render_recommendations(&mut out);
        out
    }

    fn render_structure(&self, out: &mut String) {
        let structure = &self.structure;
        if !structure.differs() {
            return;
        }
        out.push('\n');
        if !structure.streams_only_in_a.is_empty() {
            let _ = writeln!(
                out,
                "streams only in A: {}",
                structure.streams_only_in_a.join(", ")
            );
        }
        if !structure.streams_only_in_b.is_empty() {
            let _ = writeln!(
                out,
                "streams only in B: {}",
                structure.streams_only_in_b.join(", ")
            );
        }
        if structure.buckets_only_in_a + structure.buckets_only_in_b > 0 {
            let _ = writeln!(
                out,
                "buckets only in A: {}, only in B: {} ({} compared)",
                structure.buckets_only_in_a,
                structure.buckets_only_in_b,
                structure.buckets_compared
            );
        }
        if !structure.series_compared {
            let _ = writeln!(
                out,
                "series not compared: buckets are {} ms in A and {} ms in B; totals and \
                 fingerprints only",
                self.a.bucket_ms, self.b.bucket_ms
            );
        }
    }

    fn render_streams(&self, out: &mut String) {
        let different: Vec<&StreamDiff> = self
            .streams
            .iter()
            .filter(|s| s.status == StreamStatus::Different)
            .collect();
        if !different.is_empty() {
            out.push_str("\nstreams that differ (events A → B; first bucket beyond tolerance)\n");
            let rows: Vec<Vec<String>> = different
                .iter()
                .map(|stream| {
                    let events_delta = stream.events_b as i128 - stream.events_a as i128;
                    let totals = if events_delta == 0 {
                        format!("{} → {}", stream.events_a, stream.events_b)
                    } else {
                        format!(
                            "{} → {} ({events_delta:+}, {})",
                            stream.events_a,
                            stream.events_b,
                            format_percent(stream.events_relative_difference)
                        )
                    };
                    let first = match &stream.first_divergence {
                        Some(delta) => {
                            format!("{}  {}", delta.timestamp, format_bucket_change(delta))
                        }
                        // Different all the same: by its total (buckets in one run only) or,
                        // with an exact comparison, by its fingerprint alone.
                        None if stream.buckets_differing == 0 => {
                            let same = format!(
                                "same values in all {} compared buckets",
                                self.structure.buckets_compared
                            );
                            if stream.events_a == stream.events_b {
                                format!("{same}; fingerprints differ")
                            } else {
                                same
                            }
                        }
                        None => "no bucket beyond tolerance".to_string(),
                    };
                    vec![stream.name.clone(), totals, first]
                })
                .collect();
            write_columns(out, "  ", &rows);
        }
        let _ = writeln!(
            out,
            "\n{} streams compared: {} different, {} within tolerance, {} identical",
            self.counts.compared,
            self.counts.different,
            self.counts.within_tolerance,
            self.counts.identical
        );
    }

    fn render_largest_deltas(&self, out: &mut String) {
        if self.largest_deltas.deltas.is_empty() {
            return;
        }
        let basis = match self.largest_deltas.basis {
            DeltaBasis::Normalized => "by change of the normalized score",
            DeltaBasis::Relative => "by relative difference",
        };
        let _ = writeln!(out, "\nlargest bucket differences ({basis})");
        let rows: Vec<Vec<String>> = self
            .largest_deltas
            .deltas
            .iter()
            .enumerate()
            .map(|(rank, delta)| {
                let mut row = vec![
                    format!("{:>2}.", rank + 1),
                    delta.timestamp.clone(),
                    delta.stream.clone(),
                    format_bucket_change(delta),
                ];
                if let (Some(a), Some(b), Some(d)) = (
                    delta.normalized_a,
                    delta.normalized_b,
                    delta.normalized_delta,
                ) {
                    row.push(format!("normalized {a:.1} → {b:.1} ({d:+.1})"));
                }
                row
            })
            .collect();
        write_columns(out, "  ", &rows);
    }

    fn render_timeline(&self, out: &mut String) {
        let timeline = &self.timeline;
        let _ = write!(
            out,
            "\nexternal events: {} in A, {} in B",
            timeline.events_a, timeline.events_b
        );
        if timeline.n_differences() == 0 {
            out.push_str(", all the same\n");
            return;
        }
        out.push('\n');
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (label, events) in [("removed", &timeline.removed), ("added", &timeline.added)] {
            for event in events {
                rows.push(vec![
                    // As wide as "changed", so both tables below line up.
                    format!("{label:<7}"),
                    event.id.clone(),
                    event.timestamp.clone(),
                    event.reference.clone(),
                    format!("\"{}\"", event.title),
                ]);
            }
        }
        write_columns(out, "  ", &rows);
        // A changed event gets a line per field: titles are too long to share a line.
        let mut rows: Vec<Vec<String>> = Vec::new();
        for changed in &timeline.changed {
            for (index, change) in changed.changes.iter().enumerate() {
                let (label, id) = if index == 0 {
                    ("changed".to_string(), changed.id.clone())
                } else {
                    (String::new(), String::new())
                };
                let values = if change.field == "title" {
                    format!("\"{}\" → \"{}\"", change.a, change.b)
                } else {
                    format!("{} → {}", change.a, change.b)
                };
                rows.push(vec![label, id, change.field.clone(), values]);
            }
        }
        write_columns(out, "  ", &rows);
    }
}

impl DiffReport {
    fn render_recommendations(&self, out: &mut String) {
        let Some(diff) = &self.recommendations else {
            return;
        };
        let _ = write!(
            out,
            "\nrecommendations: {} in A ({}), {} in B ({})",
            diff.recommendations_a, diff.analyst_a, diff.recommendations_b, diff.analyst_b
        );
        if diff.n_differences() == 0 {
            out.push_str(", all the same\n");
            return;
        }
        out.push('\n');
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (label, list) in [("removed", &diff.removed), ("added", &diff.added)] {
            for recommendation in list {
                rows.push(vec![
                    format!("{label:<7}"),
                    recommendation.timestamp.clone(),
                    recommendation.key.clone(),
                    recommendation.source.clone(),
                    format!("\"{}\"", recommendation.title),
                ]);
            }
        }
        write_columns(out, "  ", &rows);
        let mut rows: Vec<Vec<String>> = Vec::new();
        for changed in &diff.changed {
            for (index, change) in changed.changes.iter().enumerate() {
                let (label, at, key) = if index == 0 {
                    (
                        "changed".to_string(),
                        changed.timestamp.clone(),
                        changed.key.clone(),
                    )
                } else {
                    (String::new(), String::new(), String::new())
                };
                let values = if change.field == "text" {
                    format!("reworded: \"{}\" → \"{}\"", change.a, change.b)
                } else {
                    format!("{} → {}", change.a, change.b)
                };
                rows.push(vec![label, at, key, change.field.clone(), values]);
            }
        }
        write_columns(out, "  ", &rows);
    }
}

/// The first 12 hex digits: enough to tell scripts apart when reading.
fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
