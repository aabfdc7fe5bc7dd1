"""The payload log: an opt-in, sampled record of what the models were asked and answered, one
JSON line per prediction (docs/payload-log.md), to a rotated file or to stdout, kept off the
request path.

- `writer`: `PayloadLog`, the sampling, the bounded queue and its one writer thread, the
  written and dropped counts.
- `records`: one prediction as one JSON line: redaction, the size cap, the number format.
- `sinks`: where the lines go: stdout, or a file rotated by size.
"""

from app.dataplane.payload_log.records import REDACTED
from app.dataplane.payload_log.sinks import RotatingFile
from app.dataplane.payload_log.writer import QUEUE_FULL, SHUTDOWN, WRITE_ERROR, PayloadLog

__all__ = ["QUEUE_FULL", "REDACTED", "SHUTDOWN", "WRITE_ERROR", "PayloadLog", "RotatingFile"]
