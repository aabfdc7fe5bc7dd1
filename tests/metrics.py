"""Reading /metrics in tests: the in-process app's and a real server's."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(client, name: str, **labels) -> float:
    """One sample's value from /metrics; 0 when the series does not exist yet."""
    response = client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return found.value
    return 0.0
