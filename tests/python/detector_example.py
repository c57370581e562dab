"""Scores a trivial detector against a labelled set written by `marketsim generate --runs`.

The README's data-set example, run by tests/dataset.rs: it loads each run's series and labels
with pandas (one line each), fits a z-score per stream and hour of day on the warm-up history,
flags buckets after the warm-up, and scores the flags bucket by bucket against the labels. It
also checks that labels, series and timestamps join without loss — every label row has its
series row, with the same timestamp string and the same actual value — and, when DuckDB is
installed, that DuckDB reads the same files to the same counts.

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
