//! Parquet copies of a run's data sets, written beside the text files when a run is asked for
//! `--parquet`: `series.parquet` (the rows of `series.csv`), `labels.parquet` (`labels.csv`) and,
//! when the run writes events, `events.parquet` (`events.jsonl`). The text files stay canonical
//! — `diff`, `export` and `report` read them — and these hold the same rows with the same
//! values, typed, so pandas and DuckDB load them without guessing: instants are
//! TIMESTAMP(MILLIS, UTC), numbers are doubles rounded exactly as the text files write them,
//! booleans are booleans, and a field the text leaves empty is null.
//!
//! `events.parquet` is one table with a sparse schema: `timestamp`, `stream`, then one typed,
//! nullable column per `data` key across the catalog's streams (in the order the catalog first
//! names them, typed by [`DATA_KEYS`]), null where an event's stream does not write the key;
//! `by_subject` is a struct with one count per catalog subject; and, when the events carry
//! scores, `normalizedValue` and `anomalyFlag`.
//!
//! Only built with the `parquet` cargo feature (on by default). Written with parquet-rs's
//! low-level column writer, without Arrow: a [`Table`] gathers rows into typed column buffers
//! and writes them as one row group when [`ROWS_PER_ROW_GROUP`] are in, so a long run's events
//! are never all in memory. Snappy-compressed; dictionaries where they pay (parquet-rs falls
//! back to plain encoding per column chunk when one grows too large); no bloom filters and no
//! key-value metadata. Nothing in the bytes depends on the clock or the machine (`created_by`
//! is the parquet-rs version), so the same run writes the same files.
//!
//! [`DATA_KEYS`]: crate::market::payload::DATA_KEYS

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{
    Compression, Encoding, LogicalType, Repetition, TimeUnit, Type as PhysicalType,
};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type, TypePtr};

use super::events::EventTable;
use super::labels::{format_number, LabelRecord};
use super::run_dir::OutputError;
use super::series::format_value;
use crate::market::catalog::Catalog;
use crate::market::payload::{
    data_kind, normalized_as_written, DataKind, DataValue, RenderContext,
};
use crate::market::{Epoch, StreamEvent};
use crate::scenario::RunPlan;
use crate::session::RunCollector;
use crate::stats::{BucketScore, ScoreTable};

pub const SERIES_PARQUET_FILE: &str = "series.parquet";
pub const LABELS_PARQUET_FILE: &str = "labels.parquet";
pub const EVENTS_PARQUET_FILE: &str = "events.parquet";

/// Rows gathered before they are written as a row group: DuckDB's own row-group size, so its
/// readers split the work as they would over its own files, and small enough that the buffers
/// of the busiest run stay a few tens of MB.
pub const ROWS_PER_ROW_GROUP: usize = 122_880;

/// What a column holds, and so its physical and logical Parquet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    /// INT64 TIMESTAMP(MILLIS, UTC): milliseconds since the Unix epoch.
    Timestamp,
    /// INT64.
    Integer,
    /// INT64 holding the bits of an unsigned 64-bit integer (logical type UINT_64), Parquet's
    /// way of storing one.
    Unsigned,
    /// DOUBLE.
    Double,
    /// BOOLEAN.
    Boolean,
    /// BYTE_ARRAY with logical type STRING (UTF-8).
    Text,
}

#[derive(Debug, Clone)]
struct ColumnSpec {
    name: String,
    kind: ColumnKind,
    nullable: bool,
}

impl ColumnSpec {
    fn required(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec {
            name: name.to_string(),
            kind,
            nullable: false,
        }
    }

    fn nullable(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec {
            name: name.to_string(),
            kind,
            nullable: true,
        }
    }

    fn parquet_type(&self) -> Result<Type, ParquetError> {
        let (physical, logical) = match self.kind {
            ColumnKind::Timestamp => (
                PhysicalType::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
            ),
            ColumnKind::Integer => (PhysicalType::INT64, None),
            ColumnKind::Unsigned => (PhysicalType::INT64, Some(LogicalType::integer(64, false))),
            ColumnKind::Double => (PhysicalType::DOUBLE, None),
            ColumnKind::Boolean => (PhysicalType::BOOLEAN, None),
            ColumnKind::Text => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        };
        let repetition = if self.nullable {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        Type::primitive_type_builder(&self.name, physical)
            .with_logical_type(logical)
            .with_repetition(repetition)
            .build()
    }
}

/// A top-level field of a table.
#[derive(Debug, Clone)]
enum Field {
    Column(ColumnSpec),
    /// A nullable struct of required members: present with every member, or null.
    Struct {
        name: String,
        members: Vec<ColumnSpec>,
    },
}

impl Field {
    /// The leaf columns in schema order, each with the definition level that means "present"
    /// (0 for a required top-level column, which has no levels).
    fn leaves(&self) -> Vec<(String, ColumnKind, i16)> {
        match self {
            Field::Column(spec) => vec![(spec.name.clone(), spec.kind, i16::from(spec.nullable))],
            Field::Struct { name, members } => members
                .iter()
                .map(|member| (format!("{name}.{}", member.name), member.kind, 1))
                .collect(),
        }
    }

    fn parquet_type(&self) -> Result<TypePtr, ParquetError> {
        let field = match self {
            Field::Column(spec) => spec.parquet_type()?,
            Field::Struct { name, members } => {
                let members = members
                    .iter()
                    .map(|member| member.parquet_type().map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                Type::group_type_builder(name)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_fields(members)
                    .build()?
            }
        };
        Ok(Arc::new(field))
    }
}

/// One value for a column: its variant must be the column's kind (timestamps, integers and
/// unsigned integers are all `Int64`); `Null` only where the column can hold one.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Int64(i64),
    Double(f64),
    Boolean(bool),
    Text(&'a str),
    Null,
}

/// The values of a column gathered for the row group being built. Text is kept as one byte
/// buffer with the end of each value, not one allocation per value.
enum ColumnValues {
    Int64(Vec<i64>),
    Double(Vec<f64>),
    Boolean(Vec<bool>),
    Text { bytes: Vec<u8>, ends: Vec<usize> },
}

struct ColumnBuffer {
    /// The column's path, for errors (`by_subject.math`).
    path: String,
    values: ColumnValues,
    /// Definition levels of a column that can be null (0 null, `present_level` a value);
    /// `None` for a required column.
    definition_levels: Option<Vec<i16>>,
    /// The definition level of a value: 1 for a nullable column, and for a member of a
    /// nullable struct (the struct is there; members themselves are required).
    present_level: i16,
    /// Values and nulls pushed since the last row group was written.
    rows: usize,
}

impl ColumnBuffer {
    fn new(path: String, kind: ColumnKind, present_level: i16) -> ColumnBuffer {
        let values = match kind {
            ColumnKind::Timestamp | ColumnKind::Integer | ColumnKind::Unsigned => {
                ColumnValues::Int64(Vec::new())
            }
            ColumnKind::Double => ColumnValues::Double(Vec::new()),
            ColumnKind::Boolean => ColumnValues::Boolean(Vec::new()),
            ColumnKind::Text => ColumnValues::Text {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
        };
        ColumnBuffer {
            path,
            values,
            definition_levels: (present_level > 0).then(Vec::new),
            present_level,
            rows: 0,
        }
    }

    fn push(&mut self, cell: Cell) -> Result<(), ParquetError> {
        let present = match (&mut self.values, cell) {
            (_, Cell::Null) => false,
            (ColumnValues::Int64(values), Cell::Int64(value)) => {
                values.push(value);
                true
            }
            (ColumnValues::Double(values), Cell::Double(value)) => {
                values.push(value);
                true
            }
            (ColumnValues::Boolean(values), Cell::Boolean(value)) => {
                values.push(value);
                true
            }
            (ColumnValues::Text { bytes, ends }, Cell::Text(text)) => {
                bytes.extend_from_slice(text.as_bytes());
                ends.push(bytes.len());
                true
            }
            (_, cell) => {
                return Err(ParquetError::General(format!(
                    "column `{}` cannot hold {cell:?}",
                    self.path
                )))
            }
        };
        match &mut self.definition_levels {
            Some(levels) => levels.push(if present { self.present_level } else { 0 }),
            None if !present => {
                return Err(ParquetError::General(format!(
                    "column `{}` is required, and a row has no value for it",
                    self.path
                )))
            }
            None => {}
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the gathered values as this column's chunk of a row group and empties the buffer.
    fn write_to(&mut self, writer: &mut ColumnWriter) -> Result<(), ParquetError> {
        let levels = self.definition_levels.as_deref();
        match (writer, &mut self.values) {
            (ColumnWriter::Int64ColumnWriter(writer), ColumnValues::Int64(values)) => {
                writer.write_batch(values, levels, None)?;
                values.clear();
            }
            (ColumnWriter::DoubleColumnWriter(writer), ColumnValues::Double(values)) => {
                writer.write_batch(values, levels, None)?;
                values.clear();
            }
            (ColumnWriter::BoolColumnWriter(writer), ColumnValues::Boolean(values)) => {
                writer.write_batch(values, levels, None)?;
                values.clear();
            }
            (ColumnWriter::ByteArrayColumnWriter(writer), ColumnValues::Text { bytes, ends }) => {
                // Every value is a slice of one shared buffer: no copy per value.
                let all = Bytes::from(std::mem::take(bytes));
                let mut start = 0;
                let values: Vec<ByteArray> = ends
                    .iter()
                    .map(|&end| {
                        let value = ByteArray::from(all.slice(start..end));
                        start = end;
                        value
                    })
                    .collect();
                writer.write_batch(&values, levels, None)?;
                ends.clear();
            }
            _ => {
                return Err(ParquetError::General(format!(
                    "column `{}` does not have the schema's type",
                    self.path
                )))
            }
        }
        if let Some(levels) = &mut self.definition_levels {
            levels.clear();
        }
        self.rows = 0;
        Ok(())
    }
}

/// A Parquet file being written one row group at a time: values are pushed column by column,
/// a row is ended with [`Table::end_row`] (columns left without a value get null), and every
/// [`ROWS_PER_ROW_GROUP`] rows the buffers are written out.
struct Table {
    writer: SerializedFileWriter<File>,
    columns: Vec<ColumnBuffer>,
    /// Rows ended since the last row group was written.
    rows: usize,
}

impl Table {
    fn create(path: &Path, fields: &[Field]) -> Result<Table, ParquetError> {
        let schema = Type::group_type_builder("schema")
            .with_fields(
                fields
                    .iter()
                    .map(Field::parquet_type)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .build()?;
        // Every table's `timestamp` is the row's instant, never decreasing and all but unique:
        // a dictionary cannot help it, differences can (a byte or two a row instead of eight;
        // it was half of events.parquet).
        let row_time = ColumnPath::from("timestamp");
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_column_dictionary_enabled(row_time.clone(), false)
            .set_column_encoding(row_time, Encoding::DELTA_BINARY_PACKED)
            .build();
        let file = File::create(path).map_err(|error| ParquetError::External(Box::new(error)))?;
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))?;
        let columns = fields
            .iter()
            .flat_map(Field::leaves)
            .map(|(path, kind, present_level)| ColumnBuffer::new(path, kind, present_level))
            .collect();
        Ok(Table {
            writer,
            columns,
            rows: 0,
        })
    }

    fn push(&mut self, column: usize, cell: Cell) -> Result<(), ParquetError> {
        match self.columns.get_mut(column) {
            Some(buffer) => buffer.push(cell),
            None => Err(ParquetError::IndexOutOfBound(column, self.columns.len())),
        }
    }

    /// Ends the row: columns without a value in it get null (an error for a required one).
    fn end_row(&mut self) -> Result<(), ParquetError> {
        for buffer in &mut self.columns {
            if buffer.rows == self.rows {
                buffer.push(Cell::Null)?;
            }
            if buffer.rows != self.rows + 1 {
                return Err(ParquetError::General(format!(
                    "column `{}` got {} values in one row",
                    buffer.path,
                    buffer.rows.saturating_sub(self.rows)
                )));
            }
        }
        self.rows += 1;
        if self.rows >= ROWS_PER_ROW_GROUP {
            self.write_row_group()?;
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut row_group = self.writer.next_row_group()?;
        let mut buffers = self.columns.iter_mut();
        while let Some(mut column) = row_group.next_column()? {
            let Some(buffer) = buffers.next() else {
                return Err(ParquetError::General(
                    "the schema has more columns than the table".to_string(),
                ));
            };
            buffer.write_to(column.untyped())?;
            column.close()?;
        }
        row_group.close()?;
        self.rows = 0;
        Ok(())
    }

    /// Writes the last row group and the footer. A table without rows is a valid file with
    /// the schema and no row group.
    fn finish(mut self) -> Result<(), ParquetError> {
        self.write_row_group()?;
        self.writer.close()?;
        Ok(())
    }
}

fn located(path: &Path) -> impl FnOnce(ParquetError) -> OutputError + '_ {
    move |source| OutputError::Parquet {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// A number as a text file writes it, read back: the Parquet value is the one a reader of the
/// CSV gets, to the last bit, not the unrounded one.
fn as_written(text: &str) -> Cell<'static> {
    match text.parse::<f64>() {
        Ok(value) => Cell::Double(value),
        Err(_) => Cell::Null,
    }
}

/// `series.parquet`: the rows of `series.csv` in its order. Columns: `timestamp`, `stream`,
/// `value` (null where a gauge had no reading) and, when the run was analyzed, `expected`, `z`,
/// `normalized` and `flag` (null where the baseline has nothing to say).
pub fn write_series_parquet(
    path: &Path,
    plan: &RunPlan,
    collector: &RunCollector,
    scores: Option<&ScoreTable>,
) -> Result<(), OutputError> {
    write_series_table(path, plan, collector, scores).map_err(located(path))
}

fn write_series_table(
    path: &Path,
    plan: &RunPlan,
    collector: &RunCollector,
    scores: Option<&ScoreTable>,
) -> Result<(), ParquetError> {
    let mut fields = vec![
        Field::Column(ColumnSpec::required("timestamp", ColumnKind::Timestamp)),
        Field::Column(ColumnSpec::required("stream", ColumnKind::Text)),
        Field::Column(ColumnSpec::nullable("value", ColumnKind::Double)),
    ];
    if scores.is_some() {
        for name in ["expected", "z", "normalized"] {
            fields.push(Field::Column(ColumnSpec::nullable(
                name,
                ColumnKind::Double,
            )));
        }
        fields.push(Field::Column(ColumnSpec::nullable(
            "flag",
            ColumnKind::Text,
        )));
    }
    let mut table = Table::create(path, &fields)?;
    let epoch = plan.epoch();
    for bucket in 0..plan.bucket_count() {
        let start = epoch.absolute_ms(bucket as u64 * plan.script.bucket_ms);
        for stream in &plan.catalog.streams {
            let index = stream.id.index();
            table.push(0, Cell::Int64(start))?;
            table.push(1, Cell::Text(&stream.name))?;
            let value = format_value(
                collector.bucket_value(bucket, index),
                collector.is_gauge(index),
            );
            table.push(2, as_written(&value))?;
            if let Some(score) = scores.and_then(|table| table.get(bucket, index)) {
                table.push(3, as_written(&format!("{:.3}", score.expected)))?;
                table.push(4, as_written(&format!("{:.3}", score.z)))?;
                table.push(5, as_written(&format!("{:.1}", score.normalized)))?;
                table.push(6, Cell::Text(score.flag.as_str()))?;
            }
            table.end_row()?;
        }
    }
    table.finish()
}

/// `labels.parquet`: the rows of `labels.csv` in its order, every [`LabelRecord`] field typed
/// (`parent` null where the CSV leaves it empty).
pub fn write_labels_parquet(path: &Path, records: &[LabelRecord]) -> Result<(), OutputError> {
    write_labels_table(path, records).map_err(located(path))
}

fn write_labels_table(path: &Path, records: &[LabelRecord]) -> Result<(), ParquetError> {
    use ColumnKind::{Boolean, Double, Text, Timestamp};
    let columns = [
        ColumnSpec::required("timestamp", Timestamp),
        ColumnSpec::required("stream", Text),
        ColumnSpec::required("item", Text),
        ColumnSpec::required("kind", Text),
        ColumnSpec::required("ref", Text),
        ColumnSpec::required("origin", Text),
        ColumnSpec::nullable("parent", Text),
        ColumnSpec::required("scripted", Boolean),
        ColumnSpec::required("red_herring", Boolean),
        ColumnSpec::required("actual", Double),
        ColumnSpec::required("counterfactual", Double),
        ColumnSpec::required("delta", Double),
        ColumnSpec::required("relative_delta", Double),
        ColumnSpec::required("band", Double),
        ColumnSpec::required("significant", Boolean),
    ];
    let fields: Vec<Field> = columns.into_iter().map(Field::Column).collect();
    let mut table = Table::create(path, &fields)?;
    for record in records {
        let parent = if record.parent.is_empty() {
            Cell::Null
        } else {
            Cell::Text(&record.parent)
        };
        let cells = [
            Cell::Int64(record.timestamp_unix_ms),
            Cell::Text(&record.stream),
            Cell::Text(&record.item),
            Cell::Text(record.kind),
            Cell::Text(&record.reference),
            Cell::Text(record.origin),
            parent,
            Cell::Boolean(record.scripted),
            Cell::Boolean(record.red_herring),
            as_written(&format_number(record.actual, record.gauge)),
            as_written(&format_number(record.counterfactual, record.gauge)),
            as_written(&format_number(record.delta, record.gauge)),
            as_written(&format!("{:.3}", record.relative_delta)),
            as_written(&format!("{:.3}", record.band)),
            Cell::Boolean(record.significant),
        ];
        for (column, cell) in cells.into_iter().enumerate() {
            table.push(column, cell)?;
        }
        table.end_row()?;
    }
    table.finish()
}

/// Where a stream's `data` keys go in `events.parquet`.
struct StreamColumns {
    /// (key, its column; for `by_subject` the first of its members).
    keys: Vec<(String, usize)>,
}

/// `events.parquet`, written as the run goes: [`EventsJsonlSink`] hands it each event in the
/// order and with the score it writes to `events.jsonl`. The first error stops writing and is
/// reported by [`EventTable::finish`], as the JSON sink does with its own.
///
/// [`EventsJsonlSink`]: super::events::EventsJsonlSink
pub struct EventsParquetWriter<'a> {
    table: Table,
    path: PathBuf,
    catalog: &'a Catalog,
    epoch: Epoch,
    streams: Vec<StreamColumns>,
    /// The columns of `normalizedValue` and `anomalyFlag`, when the events carry scores.
    score_columns: Option<(usize, usize)>,
    error: Option<ParquetError>,
}

impl<'a> EventsParquetWriter<'a> {
    /// Creates the file at `path` with the catalog's columns; `scored`: the events carry their
    /// bucket's scores (an analyzed run whose baseline was known as events were written).
    pub fn create(
        path: &Path,
        catalog: &'a Catalog,
        epoch: Epoch,
        scored: bool,
    ) -> Result<EventsParquetWriter<'a>, OutputError> {
        Self::create_table(path, catalog, epoch, scored).map_err(located(path))
    }

    fn create_table(
        path: &Path,
        catalog: &'a Catalog,
        epoch: Epoch,
        scored: bool,
    ) -> Result<EventsParquetWriter<'a>, ParquetError> {
        let mut fields = vec![
            Field::Column(ColumnSpec::required("timestamp", ColumnKind::Timestamp)),
            Field::Column(ColumnSpec::required("stream", ColumnKind::Text)),
        ];
        let mut next_column = 2;
        // Each key once, at the first stream that names it, with the column it starts at.
        let mut key_columns: Vec<(String, usize)> = Vec::new();
        for stream in &catalog.streams {
            for key in &stream.payload_fields {
                if key_columns.iter().any(|(known, _)| known == key) {
                    continue;
                }
                let Some(kind) = data_kind(key) else {
                    return Err(ParquetError::General(format!(
                        "stream `{}` lists the payload key `{key}`, which the model never writes",
                        stream.name
                    )));
                };
                key_columns.push((key.clone(), next_column));
                let field = match kind {
                    DataKind::SubjectCounts => Field::Struct {
                        name: key.clone(),
                        members: catalog
                            .subjects
                            .iter()
                            .map(|subject| ColumnSpec::required(&subject.name, ColumnKind::Integer))
                            .collect(),
                    },
                    DataKind::Text => Field::Column(ColumnSpec::nullable(key, ColumnKind::Text)),
                    DataKind::Integer => {
                        Field::Column(ColumnSpec::nullable(key, ColumnKind::Integer))
                    }
                    DataKind::Unsigned => {
                        Field::Column(ColumnSpec::nullable(key, ColumnKind::Unsigned))
                    }
                    DataKind::Number => {
                        Field::Column(ColumnSpec::nullable(key, ColumnKind::Double))
                    }
                    DataKind::Time => {
                        Field::Column(ColumnSpec::nullable(key, ColumnKind::Timestamp))
                    }
                };
                next_column += field.leaves().len();
                fields.push(field);
            }
        }
        let score_columns = scored.then(|| {
            fields.push(Field::Column(ColumnSpec::nullable(
                "normalizedValue",
                ColumnKind::Double,
            )));
            fields.push(Field::Column(ColumnSpec::nullable(
                "anomalyFlag",
                ColumnKind::Text,
            )));
            (next_column, next_column + 1)
        });
        let streams = catalog
            .streams
            .iter()
            .map(|stream| StreamColumns {
                keys: key_columns
                    .iter()
                    .filter(|(key, _)| stream.payload_fields.contains(key))
                    .cloned()
                    .collect(),
            })
            .collect();
        Ok(EventsParquetWriter {
            table: Table::create(path, &fields)?,
            path: path.to_path_buf(),
            catalog,
            epoch,
            streams,
            score_columns,
            error: None,
        })
    }

    fn append_row(
        &mut self,
        event: &StreamEvent,
        score: Option<BucketScore>,
    ) -> Result<(), ParquetError> {
        let EventsParquetWriter {
            table,
            catalog,
            epoch,
            streams,
            score_columns,
            ..
        } = self;
        let stream = event.stream.index();
        let (Some(definition), Some(columns)) = (catalog.streams.get(stream), streams.get(stream))
        else {
            return Err(ParquetError::General(format!(
                "an event of stream {stream}, which the catalog does not have"
            )));
        };
        table.push(0, Cell::Int64(epoch.absolute_ms(event.time)))?;
        table.push(1, Cell::Text(&definition.name))?;
        let context = RenderContext {
            subjects: &catalog.subjects,
            epoch: *epoch,
        };
        event.payload.try_for_each_field(context, |key, value| {
            let Some(&(_, column)) = columns.keys.iter().find(|(known, _)| known == key) else {
                return Err(ParquetError::General(format!(
                    "stream `{}` wrote the payload key `{key}`, which its catalog entry does not list",
                    definition.name
                )));
            };
            match value {
                DataValue::Text(text) => table.push(column, Cell::Text(&text)),
                DataValue::Id(id) => table.push(column, Cell::Text(&id.to_string())),
                DataValue::Integer(value) => table.push(column, Cell::Int64(value)),
                // Parquet stores an unsigned 64-bit integer in an INT64 column, bit for bit.
                DataValue::Unsigned(value) => table.push(column, Cell::Int64(value as i64)),
                DataValue::Number(value) => table.push(column, Cell::Double(value)),
                DataValue::Time(time) => table.push(column, Cell::Int64(epoch.absolute_ms(time))),
                DataValue::SubjectCounts(counts) => {
                    // The model keeps one count per catalog subject; the struct has them all.
                    for member in 0..catalog.subjects.len() {
                        let count = counts.get(member).copied().unwrap_or_default();
                        table.push(column + member, Cell::Int64(i64::from(count)))?;
                    }
                    Ok(())
                }
            }
        })?;
        if let (Some((normalized_column, flag_column)), Some(score)) = (*score_columns, score) {
            table.push(
                normalized_column,
                Cell::Double(normalized_as_written(score.normalized)),
            )?;
            table.push(flag_column, Cell::Text(score.flag.as_str()))?;
        }
        table.end_row()
    }
}

impl EventTable for EventsParquetWriter<'_> {
    fn append(&mut self, event: &StreamEvent, score: Option<BucketScore>) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.append_row(event, score) {
            self.error = Some(error);
        }
    }

    fn finish(self: Box<Self>) -> Result<(), OutputError> {
        let EventsParquetWriter {
            table, path, error, ..
        } = *self;
        match error {
            Some(error) => Err(located(&path)(error)),
            None => table.finish().map_err(located(&path)),
        }
    }
}
