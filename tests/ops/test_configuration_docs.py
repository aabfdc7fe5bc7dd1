"""The configuration table (docs/configuration.md) says what app/core/settings.py does: every
setting, its default and its meaning, so the docs cannot drift from the code."""

import re
from pathlib import Path

from app.core.settings import Settings

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
PAYLOAD_LOG = CONFIGURATION.with_name("payload-log.md")


def configuration_rows(page: Path = CONFIGURATION) -> dict[str, tuple[str, str]]:
    """The first settings table of a page, by variable: (default, meaning)."""
    section = page.read_text()
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


def test_the_payload_log_page_lists_its_settings_with_their_defaults():
    """docs/payload-log.md explains its settings at more length; the names and defaults are
    the configuration table's."""
    defaults = {name: default for name, (default, _) in configuration_rows().items()}
    expected = {name: value for name, value in defaults.items() if "_PAYLOAD_LOG" in name}
    shown = {name: default for name, (default, _) in configuration_rows(PAYLOAD_LOG).items()}
    assert shown == expected
