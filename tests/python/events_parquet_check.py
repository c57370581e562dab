"""Checks that a run's events.parquet holds exactly the events of its events.jsonl, with DuckDB.

Run by tests/dataset.rs on a run written with `--events --parquet` (and `--analyze`, so the
scores are checked too). Row by row, in file order (a positional join): the typed timestamp is
the JSON's instant, the stream is the same, every `data` key's column holds the JSON's value cast
to the column's type (`by_subject` as its struct), columns of keys an event does not have are
null, and `normalizedValue`/`anomalyFlag` are the JSON's. Also: every `data` key of the JSON has
a column.

Usage: python events_parquet_check.py RUN_FOLDER  (prints one JSON object; exit 1 on a mismatch)
"""

import json
import sys

import duckdb

TOP_LEVEL = ["timestamp", "stream", "normalizedValue", "anomalyFlag"]


def main() -> int:
    folder = sys.argv[1]
    parquet = f"'{folder}/events.parquet'"
    jsonl = f"""read_json('{folder}/events.jsonl', format = 'newline_delimited',
        columns = {{stream: 'VARCHAR', timestamp: 'VARCHAR', data: 'JSON',
                    normalizedValue: 'DOUBLE', anomalyFlag: 'VARCHAR'}})"""
    columns = duckdb.sql(f"describe select * from {parquet}").fetchall()
    names = [name for name, *_ in columns]
    failures = []

    # The JSON side, shaped as the Parquet table: each column from the line's field of that name.
    expressions = []
    for name, column_type, *_ in columns:
        if name == "timestamp":
            expressions.append("timestamp::TIMESTAMPTZ as timestamp")
        elif name in TOP_LEVEL:
            expressions.append(f'"{name}"')
        elif column_type.startswith("STRUCT"):
            expressions.append(f"(data->'{name}')::{column_type} as \"{name}\"")
        else:
            expressions.append(f"(data->>'{name}')::{column_type} as \"{name}\"")
    differs = " or ".join(f'p."{name}" is distinct from j."{name}"' for name in names)
    counts = duckdb.sql(
        f"""select (select count(*) from {parquet}), (select count(*) from {jsonl}),
                   (select count(*) from (select * from {parquet}) p
                    positional join (select {", ".join(expressions)} from {jsonl}) j
                    where {differs})"""
    ).fetchall()[0]
    parquet_rows, json_rows, differing_rows = counts
    if parquet_rows != json_rows:
        failures.append(f"events.parquet has {parquet_rows} rows, events.jsonl {json_rows}")
    if differing_rows:
        failures.append(f"{differing_rows} rows of events.parquet differ from events.jsonl")

    keys = {
        key
        for (key,) in duckdb.sql(f"select distinct unnest(json_keys(data)) from {jsonl}").fetchall()
    }
    for key in sorted(keys - set(names)):
        failures.append(f"events.jsonl has the data key {key}, events.parquet no column for it")

    print(
        json.dumps(
            {
                "rows": parquet_rows,
                "differing_rows": differing_rows,
                "columns": len(names),
                "data_keys": len(keys),
                "scored": "normalizedValue" in names,
            },
            sort_keys=True,
        )
    )
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
