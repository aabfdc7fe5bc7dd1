"""`Scorer.score`, the one scoring function: the service's model, checks and messages."""

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from app.batch.scoring import IMAGE_COLUMN, Scorer, familiarity_columns
from app.core.errors import BadInput, GlassboxError
from app.core.settings import Settings
from app.dataplane import explain, familiarity
from app.dataplane.inputs import Inputs
from app.http.schemas import features_model
from tests.batch.conftest import FEATURES, png


def feature_table(rows: list[list[object]], ids: list[str]) -> pa.Table:
    columns = {"id": pa.array(ids)}
    for index, name in enumerate(FEATURES):
        columns[name] = pa.array([None if r[index] is None else str(r[index]) for r in rows])
    return pa.table(columns)


def test_predictions_are_the_models_on_the_same_rows(housing_runtime, housing_rows):
    scorer = Scorer(housing_runtime, Settings(), "id")
    ids = [f"r{i}" for i in range(len(housing_rows))]
    scored = scorer.score(feature_table(housing_rows.tolist(), ids))
    assert scored.rejects.num_rows == 0
    assert scored.predictions.column("id").to_pylist() == ids
    expected = housing_runtime.predict(housing_rows)[:, 0]
    np.testing.assert_allclose(scored.predictions.column("value").to_numpy(), expected, rtol=1e-6)
    dollars = scored.predictions.column("dollars").to_numpy()
    np.testing.assert_allclose(dollars, expected * 100_000, atol=0.01)


def test_familiarity_is_computed_only_when_asked_for(housing_runtime, housing_rows, monkeypatch):
    """Its score is a third to a half of housing's scoring time (docs/batch.md, "Speed")."""
    table = feature_table(housing_rows.tolist(), [str(i) for i in range(len(housing_rows))])
    asked = Scorer(housing_runtime, Settings(), "id", with_familiarity=True)
    expected = asked.score(table).predictions.column("value")

    def unwanted(rows):
        raise AssertionError("familiarity computed without --familiarity")

    monkeypatch.setattr(housing_runtime, "predict_scored", unwanted)
    plain = Scorer(housing_runtime, Settings(), "id")
    plain.warm_up(16)
    found = plain.score(table).predictions.column("value").to_numpy()
    np.testing.assert_allclose(found, expected.to_numpy(), rtol=1e-6)


def test_numeric_columns_are_scored_as_text_ones_are(housing_runtime, housing_rows):
    scorer = Scorer(housing_runtime, Settings(), "id")
    text = scorer.score(feature_table(housing_rows.tolist(), ["a"] * len(housing_rows)))
    numeric = pa.table(
        {"id": ["a"] * len(housing_rows)}
        | {name: housing_rows[:, i].astype(np.float64) for i, name in enumerate(FEATURES)}
    )
    np.testing.assert_allclose(
        scorer.score(numeric).predictions.column("value").to_numpy(),
        text.predictions.column("value").to_numpy(),
        rtol=1e-6,
    )


def test_a_refused_row_goes_to_the_rejects_with_the_typed_endpoints_message(
    housing_runtime, housing_rows
):
    card = housing_runtime.loaded_card
    good = housing_rows[0].tolist()
    far_north = [*good[:6], 50.0, good[7]]  # Latitude above the card's range
    scored = Scorer(housing_runtime, Settings(), "id").score(
        feature_table([good, far_north, good], ["a", "b", "c"])
    )
    assert scored.predictions.column("id").to_pylist() == ["a", "c"]
    assert scored.rejects.column("id").to_pylist() == ["b"]
    with pytest.raises(ValidationError) as refused:
        features_model(card).model_validate(dict(zip(FEATURES, far_north, strict=True)))
    [error] = refused.value.errors()
    assert error["ctx"]["error"].args[0] == scored.rejects.column("reason")[0].as_py()


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (None, "MedInc is missing"),
        ("abc", "MedInc is not a number (got 'abc')"),
        ("nan", "MedInc must be a finite number (got nan)"),
        ("-inf", "MedInc must be a finite number (got -inf)"),
    ],
)
def test_every_unusable_value_is_named(housing_runtime, housing_rows, cell, reason):
    row = [cell, *housing_rows[0].tolist()[1:]]
    scored = Scorer(housing_runtime, Settings(), "id").score(feature_table([row], ["x"]))
    assert scored.predictions.num_rows == 0
    assert scored.rejects.to_pylist() == [{"id": "x", "reason": reason}]


def test_all_of_a_rows_problems_are_named(housing_runtime, housing_rows):
    row = [None, "abc", *housing_rows[0].tolist()[2:6], 10.0, housing_rows[0][7]]
    reason = Scorer(housing_runtime, Settings(), "id").score(feature_table([row], ["x"]))
    assert reason.rejects.column("reason")[0].as_py().split("; ") == [
        "MedInc is missing",
        "HouseAge is not a number (got 'abc')",
        "Latitude must be between 30.0 and 44.0 degrees north (got 10.0)",
    ]


def test_images_are_preprocessed_as_uploads_and_refused_with_their_messages(
    mnist_runtime, mnist_sample
):
    settings = Settings()
    card = mnist_runtime.loaded_card
    digits = [png(255 - pixels) for pixels in mnist_sample["x_test"][:5]]
    files = [digits[0], b"not an image", *digits[1:], b""]
    table = pa.table({"file": [f"f{i}" for i in range(len(files))], IMAGE_COLUMN: files})
    scorer = Scorer(mnist_runtime, settings, "file")
    scored = scorer.score(table)
    scorer.close()
    inputs = Inputs(settings)
    model_input = np.concatenate([inputs.image_array(card, data) for data in digits])
    expected = mnist_runtime.predict(model_input).argmax(axis=1)
    assert scored.predictions.column("class_index").to_pylist() == expected.tolist()
    assert scored.predictions.column("file").to_pylist() == ["f0", "f2", "f3", "f4", "f5"]
    reasons = {}
    for name, data in (("f1", b"not an image"), ("f6", b"")):
        with pytest.raises(GlassboxError) as refused:
            inputs.image_array(card, data)
        reasons[name] = refused.value.message
    assert dict(zip(*scored.rejects.to_pydict().values(), strict=True)) == reasons
    np.testing.assert_allclose(
        sum(scored.predictions.column(f"probability_{d}").to_numpy() for d in range(10)),
        1.0,
        atol=1e-5,
    )


def test_top_attributions_are_the_explanations(housing_runtime, housing_rows):
    steps = 64
    scorer = Scorer(housing_runtime, Settings(), "id", explain_top=3, explain_steps=steps)
    scored = scorer.score(feature_table(housing_rows[:2].tolist(), ["a", "b"]))
    for index, row in enumerate(housing_rows[:2]):
        answer = explain.explanation(housing_runtime, row, explain.ExplainOptions(steps=steps))
        assert answer.features is not None
        found = scored.predictions.slice(index, 1).to_pylist()[0]
        assert [found[f"top{k}_feature"] for k in (1, 2, 3)] == [
            f.name for f in answer.features[:3]
        ]
        np.testing.assert_allclose(
            [found[f"top{k}_attribution"] for k in (1, 2, 3)],
            [f.attribution for f in answer.features[:3]],
            rtol=1e-4,
            atol=1e-6,
        )


def test_attributions_of_images_are_refused(mnist_runtime):
    with pytest.raises(BadInput, match="for tabular models"):
        Scorer(mnist_runtime, Settings(), "file", explain_top=1)


def test_familiarity_columns_are_the_typed_answers(housing_runtime, housing_rows):
    rows = housing_rows[:5].copy()
    rows[4, 0] *= 4  # MedInc far above the census blocks'
    scored = Scorer(housing_runtime, Settings(), "id", with_familiarity=True).score(
        feature_table(rows.tolist(), list("abcde"))
    )
    answered = familiarity.answers(
        housing_runtime, rows, housing_runtime.predict_scored(rows).familiarity
    )
    found = scored.predictions.to_pylist()
    assert [row["familiar"] for row in found] == [a.familiar for a in answered]
    assert not found[4]["familiar"]
    np.testing.assert_allclose(
        [row["familiarity_score"] for row in found], [a.score for a in answered], rtol=1e-4
    )
    assert [row["features_outside"] for row in found] == [
        ";".join(a.features_outside or []) for a in answered
    ]


def test_familiarity_of_an_image_names_its_nearest_class_where_the_method_has_one(
    mnist_runtime, mnist_sample
):
    digits = mnist_sample["x_test"][:3]
    table = pa.table({"file": ["a", "b", "c"], IMAGE_COLUMN: [png(d) for d in digits]})
    found = Scorer(mnist_runtime, Settings(), "file", with_familiarity=True).score(table)
    assert found.predictions.num_rows == 3
    assert {"familiarity_score", "familiarity_percentile", "familiar", "nearest_class"} <= set(
        found.predictions.column_names
    )
    assert all(
        0 <= p <= 100 for p in found.predictions.column("familiarity_percentile").to_pylist()
    )


def test_familiarity_is_refused_for_a_card_without_it(housing_runtime):
    card = housing_runtime.loaded_card.model_copy(update={"familiarity": None})
    runtime = type("Bare", (), {"loaded_card": card})()
    with pytest.raises(BadInput, match="no familiarity"):
        familiarity_columns(runtime)
