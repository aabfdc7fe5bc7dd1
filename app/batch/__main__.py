"""`python -m app.batch`: see `app.batch.cli`."""

from app.batch.cli import main

raise SystemExit(main())
