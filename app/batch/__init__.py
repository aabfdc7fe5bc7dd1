"""Batch scoring of files: `python -m app.batch MODEL INPUT OUTPUT` (or `glassbox-batch`) scores
a CSV or Parquet file of features, or a folder of images, with the same artifact, preprocessing
and validation as the service, a chunk at a time, so memory stays flat for any file size.

A third way in beside the two transports: it calls the data plane's input checks and the
runtime directly, with no server, and imports neither `app.http` nor `app.grpc`.

- `loading`: the model version to score with, picked by the service's own resolution.
- `scoring`: `Scorer`, the one scoring function (a chunk in, predictions and rejects out) that
  the command line and the distributed job both call.
- `sources`: the input read in chunks (CSV, Parquet, a folder of images).
- `sinks`: the predictions and the rejects written as they come (CSV or Parquet).
- `cli`: the command line, its progress bar, summary and exit codes.
- `distributed`: the same `Scorer` in a Ray Data `map_batches` job (the `batch` extra).
"""
