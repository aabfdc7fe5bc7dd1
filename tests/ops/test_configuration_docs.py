"""The configuration table (docs/configuration.md) says what app/settings.py does: every setting,
its default and its meaning, so the docs cannot drift from the code."""

import re
from pathlib import Path

from app.core.settings import Settings

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def configuration_rows() -> dict[str, tuple[str, str]]:
    section = CONFIGURATION.read_text()
    table = section[: section.index("\n\n", section.index("| Variable"))]
    rows = re.findall(r"^\| `(GLASSBOX_\w+)` \| (.*?) \| (.*) \|$", table, re.M)
    return {name: (default, meaning) for name, default, meaning in rows}


def shown_default(value: object) -> str:
    if value in ([], {}, None, ""):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def test_every_setting_is_in_the_configuration_docs_with_its_default_and_meaning():
    rows = configuration_rows()
    expected = {
        f"GLASSBOX_{name.upper()}": (
            shown_default(field.get_default(call_default_factory=True)),
            field.description,
        )
        for name, field in Settings.model_fields.items()
    }
    assert rows == expected
