"""``twin train`` says what is wrong with its arguments (exit code 2, no traceback) before it
loads or generates any data, and registers nothing."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scene", "no-such-scene"], "no-such-scene"),
        (["--generate", "-3"], "--generate -3"),
        (["--generate", "4", "--steps", "0"], "--steps 0"),
        (["--generate", "4", "--max-minutes", "0"], "--max-minutes 0"),
        (["--generate", "4", "--seed", "-1"], "--seed -1"),
        (["--generate", "4", "--episodes", "all"], "not both"),
    ],
)
def test_twin_train_rejects_bad_arguments_with_a_clear_error(
    jumeau_home, monkeypatch, args: list[str], says: str
) -> None:
    from typer.testing import CliRunner

    from twin.cli import app

    def no_data(*_: object, **__: object) -> None:
        raise AssertionError("twin train loaded or generated data before checking its arguments")

    monkeypatch.setattr("twin.model.jobs.load_data", no_data)
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    models = Path(jumeau_home) / "models"
    assert not models.exists() or not any(models.iterdir())
