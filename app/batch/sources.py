"""A batch job's input, read a chunk at a time so memory follows the chunk, not the file: a CSV
through pyarrow's streaming reader (blocks of `CSV_BLOCK_BYTES`), a Parquet file by its record
batches (`pq.ParquetFile.iter_batches`), a folder of images a batch of files at a time. A
table's chunks have the batch size each, the last one what is left, whatever the blocks' and
row groups' sizes, so the model sees one batch shape and a last one.

Each chunk is an Arrow table as `Scorer.score` takes it: the id column, then the card's
feature columns (a CSV's cells as text, which the scorer reads as numbers) or the `image`
column of file bytes. The id is the column the user names, else a column named `id`, else the
row number from 0 (`row`) or the file's path inside the folder (`file`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.artifact.card import ModelCard
from app.batch.scoring import IMAGE_COLUMN
from app.core.errors import BadInput

Format = Literal["csv", "parquet", "images"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "images")
SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ROW_NUMBER = "row"  # the id of a table without an id column
FILE_NAME = "file"  # the id of an image in a folder
# pyarrow's streaming reader reads up to 32 blocks ahead of what is taken (its background queue):
# 256 KiB blocks bound that at 8 MiB, where 4 MiB ones held up to 128 MiB of a large file.
CSV_BLOCK_BYTES = 256 << 10


class UnreadableInput(BadInput):
    """The input cannot be opened or read, or lacks a column the job needs."""


@dataclass
class Chunk:
    table: pa.Table
    done: int  # how far the input has been read, in the source's unit, after this chunk


class Source:
    """One input file or folder, its chunks read lazily by iterating `chunks()`."""

    def __init__(
        self,
        path: Path,
        fmt: Format,
        card: ModelCard,
        id_column: str | None,
        *,
        batch_size: int,
        max_image_bytes: int,
    ):
        self.path = path
        self.format = fmt
        self.card = card
        self.batch_size = batch_size
        self.max_image_bytes = max_image_bytes
        if fmt == "images":
            if card.input.kind != "image":
                raise BadInput(f"'{card.name}' takes features: give it a CSV or Parquet file.")
            if id_column not in (None, FILE_NAME):
                raise BadInput(f"The id of an image is its file's path ('{FILE_NAME}').")
            self.id_column = FILE_NAME
            self.files = image_files(path)
            self.total, self.unit = len(self.files), "files"
            return
        if card.input.kind != "features":
            raise BadInput(f"'{card.name}' takes images: give it a folder of images.")
        columns = self._column_names()
        features = [spec.name for spec in card.input.features or []]
        missing = [name for name in features if name not in columns]
        if missing:
            raise UnreadableInput(
                f"{path} lacks the column(s) {', '.join(missing)} that '{card.name}' needs "
                f"({', '.join(features)})."
            )
        if id_column is not None and id_column not in columns:
            raise UnreadableInput(
                f"{path} has no column '{id_column}' for the id. Columns: {', '.join(columns)}."
            )
        self.id_column = id_column or ("id" if "id" in columns else ROW_NUMBER)
        self.read_columns = ([] if self.id_column == ROW_NUMBER else [self.id_column]) + [
            name for name in features if name != self.id_column
        ]
        if fmt == "parquet":
            self.total, self.unit = self._parquet().metadata.num_rows, "rows"
        else:
            self.total, self.unit = path.stat().st_size, "bytes"

    def chunks(self) -> Iterator[Chunk]:
        """The input's chunks, each read when the previous one has been taken."""
        if self.format == "images":
            yield from self._image_chunks()
            return
        row = 0
        for part, done in batched(self._tables(), self.batch_size):
            if self.id_column == ROW_NUMBER:
                numbers = pa.array(range(row, row + part.num_rows), type=pa.int64())
                part = part.add_column(0, ROW_NUMBER, numbers)
            row += part.num_rows
            yield Chunk(part, done)

    def empty(self) -> pa.Table:
        """A chunk of no rows, as the others would be (for the outputs of an empty input)."""
        if self.format == "images":
            return pa.table(
                {FILE_NAME: pa.array([], pa.string()), IMAGE_COLUMN: pa.array([], pa.binary())}
            )
        schema = self._parquet().schema_arrow if self.format == "parquet" else None
        columns = {
            name: pa.array([], schema.field(name).type if schema else pa.string())
            for name in self.read_columns
        }
        if self.id_column == ROW_NUMBER:
            columns = {ROW_NUMBER: pa.array([], pa.int64()), **columns}
        return pa.table(columns)

    def _tables(self) -> Iterator[tuple[pa.Table, int]]:
        if self.format == "parquet":
            parquet, read = self._parquet(), 0
            for batch in parquet.iter_batches(self.batch_size, columns=self.read_columns):
                read += batch.num_rows
                yield pa.Table.from_batches([batch]), read
            return
        with self.path.open("rb") as stream:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                convert_options=csv_convert_options(self.card, self.read_columns),
            )
            for batch in reader:
                yield pa.Table.from_batches([batch]), stream.tell()

    def _image_chunks(self) -> Iterator[Chunk]:
        limit = self.max_image_bytes
        for start in range(0, len(self.files), self.batch_size):
            names = self.files[start : start + self.batch_size]
            table = pa.table(
                {
                    FILE_NAME: pa.array(names, type=pa.string()),
                    IMAGE_COLUMN: pa.array([read_bounded(self.path / n, limit) for n in names]),
                }
            )
            yield Chunk(table, start + len(names))

    def _column_names(self) -> list[str]:
        if self.format == "parquet":
            return list(self._parquet().schema_arrow.names)
        try:  # the header, from the first block (parsed whole lines at a time)
            head = pa_csv.open_csv(self.path, read_options=pa_csv.ReadOptions(block_size=1 << 16))
            return list(head.schema.names)
        except (OSError, pa.ArrowInvalid) as error:
            raise UnreadableInput(f"{self.path} is not a readable CSV file: {error}") from None

    def _parquet(self) -> Any:
        try:
            return pq.ParquetFile(self.path)
        except (OSError, pa.ArrowInvalid) as error:
            raise UnreadableInput(f"{self.path} is not a readable Parquet file: {error}") from None


def batched(tables: Iterator[tuple[pa.Table, int]], size: int) -> Iterator[tuple[pa.Table, int]]:
    """The rows of `tables` again, `size` at a time (the last: what is left), each with how far
    the input had been read when it was complete. Zero-copy: slices of the tables read."""
    pending: list[pa.Table] = []
    held = done = 0
    for table, done in tables:
        pending.append(table)
        held += table.num_rows
        while held >= size:
            joined = pa.concat_tables(pending)
            yield joined.slice(0, size), done
            pending, held = [joined.slice(size)], held - size
    if held:
        yield pa.concat_tables(pending), done


def csv_convert_options(card: ModelCard, columns: list[str]) -> pa_csv.ConvertOptions:
    """Only the columns a job reads, every one as text (a column's type guessed from its first
    block would break on a later block), an empty cell as missing."""
    return pa_csv.ConvertOptions(
        include_columns=columns,
        column_types={name: pa.string() for name in columns},
        strings_can_be_null=True,
        null_values=[""],
    )


def input_format(path: Path, asked: Format | None) -> Format:
    """The format asked, else a folder's (images) or the file's by its extension."""
    if asked is not None:
        return asked
    if path.is_dir():
        return "images"
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise UnreadableInput(
            f"Cannot tell the format of {path} from its name: name it with --format "
            f"({', '.join(FORMATS)})."
        )
    return found


def image_files(folder: Path) -> list[str]:
    """Every file under `folder` (hidden ones left out) as a path inside it, sorted."""
    if not folder.is_dir():
        raise UnreadableInput(f"{folder} is not a folder of images.")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        base = Path(root).relative_to(folder)
        found += [(base / name).as_posix() for name in names if not name.startswith(".")]
    return sorted(found)


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes, at most `limit` + 1 (enough for the size check to refuse it); None
    when it cannot be read."""
    try:
        with path.open("rb") as stream:
            data: bytes = stream.read(limit + 1)
            return data
    except OSError:
        return None
