"""A batch job's outputs, written a chunk at a time as the chunks are scored: CSV
(`pyarrow.csv.CSVWriter`) or Parquet (`pyarrow.parquet.ParquetWriter`), the format by the
file's extension. The first chunk fixes the columns, which every chunk then has."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.core.errors import BadInput

OutputFormat = Literal["csv", "parquet"]
SUFFIXES: dict[str, OutputFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: Path) -> OutputFormat:
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise BadInput(f"Cannot tell which format to write {path} in: name it .csv or .parquet.")
    return found


def rejects_path(output: Path) -> Path:
    """The rejects' default place: beside the output, `<name>.rejects<suffix>`."""
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


class TableSink:
    def __init__(self, path: Path):
        self.path = path
        self.format = output_format(path)
        self.rows = 0
        self._writer: Any = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.format == "csv":
                self._writer = pa_csv.CSVWriter(self.path, table.schema)
            else:
                self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
