//! The `events.jsonl` line, written by hand: the bytes serde_json makes of a
//! [`StreamEventView`], without building a string, a map or a timestamp per event.
//!
//! A 30-day run writes about 26 million lines, so this is the writer's hot path. The line's
//! shape is fixed (`stream`, `timestamp`, `data`, then `normalizedValue` and `anomalyFlag` when
//! scored), which lets it be assembled from parts: each stream's opening is escaped once, a
//! timestamp's date is computed once a day (events come in time order) and its time of day from
//! integer milliseconds, integers go through itoa as serde_json's do, floats through serde_json
//! itself, and ids ([`Identifier`]) are padded in place. The serde rendering stays the
//! definition: a test compares the two on every event of simulated days and on edge cases.

use crate::engine::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::calendar::format_unix_ms;
use crate::market::catalog::Catalog;
use crate::market::payload::{normalized_as_written, DataValue, Identifier, RenderContext};
use crate::market::StreamEvent;

/// Writes ISO 8601 UTC timestamps with milliseconds (`2025-03-03T14:05:09.120Z`, as
/// [`format_unix_ms`] does) from integer milliseconds, remembering the last day's date.
#[derive(Debug, Default)]
pub struct TimestampWriter {
    /// The day (since 1970-01-01) whose date `date` holds.
    day: Option<i64>,
    /// `2025-03-03T`: everything before the time of day.
    date: [u8; 11],
}

impl TimestampWriter {
    pub fn write(&mut self, out: &mut Vec<u8>, unix_ms: i64) {
        let day_ms = MS_PER_DAY as i64;
        let day = unix_ms.div_euclid(day_ms);
        if self.day != Some(day) {
            let (year, month, day_of_month) = civil_from_days(day);
            if !(0..=9999).contains(&year) {
                // Years chrono writes with a sign or more digits: its text, every time.
                out.extend_from_slice(format_unix_ms(unix_ms).as_bytes());
                return;
            }
            let year = year as u64;
            self.date = [
                b'0' + (year / 1000) as u8,
                b'0' + (year / 100 % 10) as u8,
                b'0' + (year / 10 % 10) as u8,
                b'0' + (year % 10) as u8,
                b'-',
                b'0' + (month / 10) as u8,
                b'0' + (month % 10) as u8,
                b'-',
                b'0' + (day_of_month / 10) as u8,
                b'0' + (day_of_month % 10) as u8,
                b'T',
            ];
            self.day = Some(day);
        }
        let of_day = unix_ms.rem_euclid(day_ms) as u64;
        out.extend_from_slice(&self.date);
        push_two_digits(out, of_day / MS_PER_HOUR);
        out.push(b':');
        push_two_digits(out, of_day % MS_PER_HOUR / MS_PER_MINUTE);
        out.push(b':');
        push_two_digits(out, of_day % MS_PER_MINUTE / 1_000);
        out.push(b'.');
        let millis = of_day % 1_000;
        out.push(b'0' + (millis / 100) as u8);
        push_two_digits(out, millis % 100);
        out.push(b'Z');
    }
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a day counted from 1970-01-01:
/// the days-to-civil conversion from Howard Hinnant's date algorithms, in eras of 400 years.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March … 11 = February
    let day_of_month = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day_of_month)
}

fn push_two_digits(out: &mut Vec<u8>, value: u64) {
    out.push(b'0' + (value / 10 % 10) as u8);
    out.push(b'0' + (value % 10) as u8);
}

/// Writes `text` as a JSON string the way serde_json does: `"` and `\` escaped, control
/// characters as `\n`-style escapes where JSON has one and `\u00XX` (lowercase hex) otherwise,
/// everything else (non-ASCII included) as it is.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    // Nearly every string (names, ids, reasons) needs no escape: one scan, one copy.
    if !bytes
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xF) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes a float by serde_json itself: its shortest round-trip text (with its own exponent
/// style, `1e+293`) and `null` for what JSON cannot hold. Only floats are handed over: a money
/// amount or a gauge reading in a handful of events, one score per scored line.
fn push_f64(out: &mut Vec<u8>, value: f64) {
    // Serializing a float into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn push_integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn push_identifier(out: &mut Vec<u8>, id: Identifier) {
    out.push(b'"');
    // The model's own prefixes (`student_`, `bk_`): plain ASCII, checked by a test.
    out.extend_from_slice(id.prefix.as_bytes());
    let mut digits = itoa::Buffer::new();
    let number = digits.format(id.number).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        id.digits.saturating_sub(number.len()),
    ));
    out.extend_from_slice(number);
    out.push(b'"');
}

/// Renders event lines for one catalog: the same bytes as `serde_json::to_writer` of a
/// [`StreamEventView`] followed by a newline.
pub struct EventLineWriter {
    /// Per stream: `{"stream":"<name>","timestamp":"`.
    openings: Vec<Vec<u8>>,
    /// Per subject: its name as a JSON string, for `by_subject` objects.
    subject_keys: Vec<Vec<u8>>,
    event_time: TimestampWriter,
    /// Instants inside payloads (a lesson's start) are days ahead of the event: a clock of
    /// their own keeps both caches warm.
    payload_time: TimestampWriter,
}

impl EventLineWriter {
    pub fn new(catalog: &Catalog) -> Self {
        let openings = catalog
            .streams
            .iter()
            .map(|stream| {
                let mut opening = b"{\"stream\":".to_vec();
                push_json_string(&mut opening, &stream.name);
                opening.extend_from_slice(b",\"timestamp\":\"");
                opening
            })
            .collect();
        let subject_keys = catalog
            .subjects
            .iter()
            .map(|subject| {
                let mut key = Vec::new();
                push_json_string(&mut key, &subject.name);
                key
            })
            .collect();
        EventLineWriter {
            openings,
            subject_keys,
            event_time: TimestampWriter::default(),
            payload_time: TimestampWriter::default(),
        }
    }

    /// Appends `event`'s line (newline included) to `out`. `score` is the bucket's normalized
    /// value and flag, when the run is scored.
    pub fn write_line(
        &mut self,
        out: &mut Vec<u8>,
        event: &StreamEvent,
        context: RenderContext<'_>,
        score: Option<(f64, &str)>,
    ) {
        // The model emits only its catalog's streams (the serde rendering indexes the catalog
        // the same way).
        out.extend_from_slice(&self.openings[event.stream.index()]);
        self.event_time
            .write(out, context.epoch.absolute_ms(event.time));
        out.extend_from_slice(b"\",\"data\":{");
        let mut first = true;
        let _ = event
            .payload
            .try_for_each_field(context, |key, value| -> Result<(), ()> {
                if !first {
                    out.push(b',');
                }
                first = false;
                // Keys are the model's own (`DATA_KEYS`): plain ASCII, checked by a test.
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                match value {
                    DataValue::Text(text) => push_json_string(out, &text),
                    DataValue::Id(id) => push_identifier(out, id),
                    DataValue::Integer(value) => push_integer(out, value),
                    DataValue::Unsigned(value) => push_integer(out, value),
                    DataValue::Number(value) => push_f64(out, value),
                    DataValue::Time(time) => {
                        out.push(b'"');
                        self.payload_time
                            .write(out, context.epoch.absolute_ms(time));
                        out.push(b'"');
                    }
                    DataValue::SubjectCounts(counts) => {
                        out.push(b'{');
                        for (index, count) in counts.iter().enumerate() {
                            if index > 0 {
                                out.push(b',');
                            }
                            match self.subject_keys.get(index) {
                                Some(key) => out.extend_from_slice(key),
                                None => push_json_string(out, context.subject(index as u8)),
                            }
                            out.push(b':');
                            push_integer(out, *count);
                        }
                        out.push(b'}');
                    }
                }
                Ok(())
            });
        out.push(b'}');
        if let Some((normalized, flag)) = score {
            out.extend_from_slice(b",\"normalizedValue\":");
            push_f64(out, normalized_as_written(normalized));
            out.extend_from_slice(b",\"anomalyFlag\":");
            push_json_string(out, flag);
        }
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::payload::StreamEventView;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_match_chrono_across_days_and_eras(
            instants in proptest::collection::vec(-70_000_000_000_000i64..300_000_000_000_000, 1..40),
        ) {
            let mut writer = TimestampWriter::default();
            for unix_ms in instants {
                let mut out = Vec::new();
                writer.write(&mut out, unix_ms);
                prop_assert_eq!(String::from_utf8_lossy(&out), format_unix_ms(unix_ms));
            }
        }

        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in "\\PC*|[\\x00-\\x20\"\\\\]*") {
            let mut out = Vec::new();
            push_json_string(&mut out, &text);
            let expected = serde_json::to_string(&text).unwrap_or_default();
            prop_assert_eq!(String::from_utf8_lossy(&out), expected);
        }

        #[test]
        fn numbers_are_written_as_serde_json_writes_them(value in proptest::num::f64::ANY) {
            let mut out = Vec::new();
            push_f64(&mut out, value);
            let expected = serde_json::to_string(&value).unwrap_or_default();
            prop_assert_eq!(String::from_utf8_lossy(&out), expected);
        }
    }

    #[test]
    fn keys_and_id_prefixes_need_no_escaping() {
        let plain = |text: &str| {
            let mut out = Vec::new();
            push_json_string(&mut out, text);
            out.len() == text.len() + 2
        };
        for (key, _) in crate::market::payload::DATA_KEYS {
            assert!(plain(key), "{key}");
        }
        for prefix in ["student_", "tutor_", "bk_", "pay_", "tkt_"] {
            assert!(plain(prefix), "{prefix}");
        }
    }

    #[test]
    fn every_line_of_simulated_days_matches_the_serde_rendering() {
        use crate::engine::Sink;
        struct Compare<'a> {
            catalog: &'a Catalog,
            epoch: crate::market::Epoch,
            writer: EventLineWriter,
            lines: usize,
            mismatches: Vec<(String, String)>,
        }
        impl Sink<StreamEvent> for Compare<'_> {
            fn accept(&mut self, event: &StreamEvent) {
                let context = RenderContext {
                    subjects: &self.catalog.subjects,
                    epoch: self.epoch,
                };
                // Scored and unscored lines, alternately.
                let score = (self.lines % 2 == 1).then_some((37.25, "warning"));
                let mut fast = Vec::new();
                self.writer.write_line(&mut fast, event, context, score);
                let view = StreamEventView {
                    stream_name: &self.catalog.streams[event.stream.index()].name,
                    event,
                    context,
                    score,
                };
                let mut slow = serde_json::to_vec(&view).unwrap_or_default();
                slow.push(b'\n');
                if fast != slow && self.mismatches.len() < 3 {
                    self.mismatches.push((
                        String::from_utf8_lossy(&slow).into_owned(),
                        String::from_utf8_lossy(&fast).into_owned(),
                    ));
                }
                self.lines += 1;
            }
        }
        // Two days of a bundled incident script: every stream, payloads of every kind,
        // ticket and payment ids, gauges by subject.
        let text = crate::bundled::bundled_script("payment-outage").unwrap_or_default();
        let script = crate::scenario::Script::parse(std::path::Path::new("payment-outage"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = crate::scenario::RunPlan::from_script(script, None, Some(2 * MS_PER_DAY))
            .unwrap_or_else(|e| panic!("{e}"));
        let catalog = std::sync::Arc::clone(&plan.catalog);
        let epoch = crate::market::Epoch::from_datetime(plan.script.start);
        let mut sink = Compare {
            catalog: &catalog,
            epoch,
            writer: EventLineWriter::new(&catalog),
            lines: 0,
            mismatches: Vec::new(),
        };
        let mut session =
            crate::session::Session::for_run(&plan, false).unwrap_or_else(|e| panic!("{e}"));
        session.advance_to(2 * MS_PER_DAY, &mut sink);
        assert!(sink.lines > 100_000, "{} lines", sink.lines);
        assert!(sink.mismatches.is_empty(), "{:#?}", sink.mismatches);
    }
}
