"""Scores a trivial detector against a labelled set written by `marketsim generate --runs`.

The README's data-set example, run by tests/dataset.rs: it loads each run's series and labels
with pandas (one line each), fits a z-score per stream and hour of day on the warm-up history,
flags buckets after the warm-up, and scores the flags bucket by bucket against the labels. It
also checks that labels, series and timestamps join without loss — every label row has its
series row, with the same timestamp string and the same actual value — and, when DuckDB is
installed, that DuckDB reads the same files to the same counts. When a run also has
series.parquet and labels.parquet (`--parquet`) and pyarrow and DuckDB are installed, it loads
them with both (`pd.read_parquet`, `duckdb.sql(...).df()`) and checks that each holds exactly
the rows and values of its CSV, and that labels and series join on their typed timestamps.

Usage: python detector_example.py SET_FOLDER  (prints one JSON object; exit 1 on a failed check)
"""

import json
import sys

import pandas as pd

Z_THRESHOLD = 4.0


def score_run(folder: str, warmup_end: str) -> dict:
    series = pd.read_csv(f"{folder}/series.csv", dtype={"timestamp": str})
    labels = pd.read_csv(f"{folder}/labels.csv", dtype={"timestamp": str})

    # Join without loss: every label row is one stream-bucket of the series, same value.
    joined = labels.merge(series, on=["timestamp", "stream"], how="left", indicator=True)
    missing = int((joined["_merge"] != "both").sum())
    value_mismatch = int((~((joined["actual"] - joined["value"]).abs() <= 0.0005)).sum())

    series["time"] = pd.to_datetime(series["timestamp"], utc=True)
    series["hour"] = series["time"].dt.hour
    history = series[series["timestamp"] < warmup_end]
    stats = history.groupby(["stream", "hour"])["value"].agg(["mean", "std"]).reset_index()
    scored = series[series["timestamp"] >= warmup_end].merge(stats, on=["stream", "hour"], how="left")
    scored["z"] = (scored["value"] - scored["mean"]) / scored["std"].clip(lower=1.0)
    scored["flagged"] = scored["z"].abs() > Z_THRESHOLD

    truth = labels[labels["significant"] & ~labels["red_herring"]][["timestamp", "stream"]]
    truth = truth.drop_duplicates().assign(anomalous=True)
    scored = scored.merge(truth, on=["timestamp", "stream"], how="left")
    scored["anomalous"] = scored["anomalous"].astype("boolean").fillna(False).astype(bool)
    return {
        "series_rows": len(series),
        "label_rows": len(labels),
        "labels_missing_in_series": missing,
        "label_value_mismatches": value_mismatch,
        "history_buckets": int(history["timestamp"].nunique()),
        "true_positives": int((scored["flagged"] & scored["anomalous"]).sum()),
        "false_positives": int((scored["flagged"] & ~scored["anomalous"]).sum()),
        "false_negatives": int((~scored["flagged"] & scored["anomalous"]).sum()),
    }


def duckdb_counts(folder: str) -> dict | None:
    try:
        import duckdb
    except ImportError:
        return None
    labels = duckdb.sql(f"select count(*) from read_csv('{folder}/labels.csv')").fetchall()[0][0]
    joined = duckdb.sql(
        f"""select count(*) from read_csv('{folder}/labels.csv', types={{'timestamp': 'VARCHAR'}}) l
            join read_csv('{folder}/series.csv', types={{'timestamp': 'VARCHAR'}}) s
            using (timestamp, stream)"""
    ).fetchall()[0][0]
    return {"label_rows": labels, "joined_rows": joined}


def column_values(column: pd.Series, is_time: bool) -> list:
    """A column as plain Python values to compare across readers: instants as ms since the
    epoch (whatever unit and zone the reader gave them), missing values as None."""
    if is_time:
        instants = pd.to_datetime(column, utc=True).dt.as_unit("ms")
        return instants.astype("int64").tolist()
    return [None if pd.isna(value) else value for value in column.astype(object).tolist()]


def parquet_mismatches(folder: str, name: str, by_pandas: pd.DataFrame, by_duckdb: pd.DataFrame) -> list:
    """How the Parquet table (as each reader loads it) differs from the CSV of the same name:
    the same rows in the same order, the same value in every column, exact to the bit (the
    Parquet values are the CSV's text parsed back, not the unrounded numbers). Columns the
    Parquet file leaves out (series scores of a run without --analyze) must be empty in the
    CSV."""
    csv = pd.read_csv(f"{folder}/{name}.csv")
    problems = []
    for column in csv.columns:
        if column not in by_pandas.columns and csv[column].notna().any():
            problems.append(f"{name}.parquet has no column {column}, which {name}.csv fills")
    for reader, table in [("pandas", by_pandas), ("duckdb", by_duckdb)]:
        if list(table.columns) != [c for c in csv.columns if c in table.columns]:
            problems.append(f"{name}.parquet ({reader}): columns {list(table.columns)}")
            continue
        if len(table) != len(csv):
            problems.append(f"{name}.parquet ({reader}): {len(table)} rows, {name}.csv {len(csv)}")
            continue
        for column in table.columns:
            is_time = column == "timestamp"
            if column_values(table[column], is_time) != column_values(csv[column], is_time):
                problems.append(f"{name}.parquet ({reader}): column {column} differs from {name}.csv")
    return problems


def check_parquet(folder: str) -> list | None:
    """The Parquet check of one run, or None when the run has no Parquet tables or pyarrow or
    DuckDB is missing."""
    import os

    try:
        import duckdb
        import pyarrow  # noqa: F401 (pd.read_parquet's engine)
    except ImportError:
        return None
    if not all(os.path.exists(f"{folder}/{name}.parquet") for name in ["series", "labels"]):
        return None
    problems = []
    for name in ["series", "labels"]:
        by_pandas = pd.read_parquet(f"{folder}/{name}.parquet")
        by_duckdb = duckdb.sql(f"select * from '{folder}/{name}.parquet'").df()
        problems += parquet_mismatches(folder, name, by_pandas, by_duckdb)
    # Typed timestamps join whatever text form the CSVs give them.
    joined = duckdb.sql(
        f"""select count(*) from '{folder}/labels.parquet' l
            join '{folder}/series.parquet' s using (timestamp, stream)
            where abs(l.actual - s.value) <= 0.0005"""
    ).fetchall()[0][0]
    labels = duckdb.sql(f"select count(*) from '{folder}/labels.parquet'").fetchall()[0][0]
    if joined != labels:
        problems.append(f"labels.parquet: {joined} of {labels} rows join series.parquet with their value")
    return problems


def main() -> int:
    folder = sys.argv[1]
    with open(f"{folder}/manifest.json") as file:
        manifest = json.load(file)
    totals: dict = {}
    failures = []
    for run in manifest["runs"]:
        run_folder = f"{folder}/{run['run']}"
        result = score_run(run_folder, run["warmupEnd"])
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
        if result["labels_missing_in_series"] or result["label_value_mismatches"]:
            failures.append(f"{run['run']}: labels do not join the series: {result}")
        if manifest["warmupDays"] > 0 and result["history_buckets"] == 0:
            failures.append(f"{run['run']}: no history before {run['warmupEnd']}")
        counts = duckdb_counts(run_folder)
        if counts is not None:
            totals["duckdb_checked_runs"] = totals.get("duckdb_checked_runs", 0) + 1
            if counts["label_rows"] != result["label_rows"] or counts["joined_rows"] != result["label_rows"]:
                failures.append(f"{run['run']}: DuckDB reads {counts}, pandas {result['label_rows']} label rows")
        parquet_problems = check_parquet(run_folder)
        if parquet_problems is not None:
            totals["parquet_checked_runs"] = totals.get("parquet_checked_runs", 0) + 1
            failures += [f"{run['run']}: {problem}" for problem in parquet_problems]
    flagged = totals["true_positives"] + totals["false_positives"]
    anomalous = totals["true_positives"] + totals["false_negatives"]
    totals["precision"] = round(totals["true_positives"] / flagged, 3) if flagged else None
    totals["recall"] = round(totals["true_positives"] / anomalous, 3) if anomalous else None
    totals["runs"] = len(manifest["runs"])
    print(json.dumps(totals, sort_keys=True))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
