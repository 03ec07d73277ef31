"""A client made from the contract: the live gateway's `/openapi.json`, fed to a standard generator
(openapi-python-client, pinned in requirements/dev.txt), gives a Python package whose functions classify a
review, a tweet and a photo through the real stack, with the API key the document declares.

The gateway here has API keys on (a second gateway process in front of the shared TorchServe), so the
document itself, and every call, needs the key: an unauthenticated generated client gets the 401 it documents.
"""

from __future__ import annotations

import csv
import importlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from contract.catalog import TaskSpec
from modelops.local import web
from modelops.train.data import data_dir
from tests.conftest import Stack

pytestmark = pytest.mark.integration

PACKAGE = "generated_gateway_client"  # a name nothing else imports, so the generated package is the one loaded
KEY = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def keyed_gateway(live_stack: Stack, stack_root: Path) -> Iterator[str]:
    env = {"GATEWAY_API_KEYS": f"sdk:{KEY}"}
    with web.second_gateway(live_stack.cfg, env, state_dir=stack_root / "client-gateway") as cfg:
        yield cfg.gateway_url


def _generate(document: dict[str, Any], where: Path, package: str = PACKAGE) -> str:
    """Run the generator offline (no post hooks: formatting the output is not its job here) into `where/package`;
    its output."""
    spec = where / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    config = where / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}), encoding="utf-8")
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec)]
    command += ["--output-path", str(where / package), "--meta", "none", "--config", str(config)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    return output


@pytest.fixture
def sdk(keyed_gateway: str, live_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The package generated from the live document, importable as `PACKAGE` for this test only."""
    with httpx.Client(base_url=keyed_gateway, timeout=30) as http:
        assert http.get("/openapi.json").status_code == 401  # the document is behind the key too
        response = http.get("/openapi.json", headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    for spec in live_stack.catalog.values():
        assert document["paths"][spec.route]["post"]["security"] == [{"ApiKey": []}]  # required: keys are on
    output = _generate(document, tmp_path)
    assert "will not be generated" not in output, output
    assert "warning" not in output.lower(), output
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(PACKAGE)
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def _real_text(spec: TaskSpec, label: str, max_chars: int) -> str:
    """The first text of the task's shared data set that has `label` and at most `max_chars` characters."""
    with (data_dir() / spec.dataset).open(encoding="utf-8", newline="") as rows:
        return next(
            row[spec.input_column]
            for row in csv.DictReader(rows)
            if spec.label_for_value(row[spec.label_column]) == label and len(row[spec.input_column]) <= max_chars
        )


def test_a_generated_client_classifies_a_review_a_tweet_and_a_photo(
    sdk: ModuleType, keyed_gateway: str, live_stack: Stack
) -> None:
    api = importlib.import_module(f"{PACKAGE}.api.classify")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    client = sdk.AuthenticatedClient(
        base_url=keyed_gateway, token=KEY, prefix="", auth_header_name="X-API-Key", timeout=httpx.Timeout(60)
    )
    catalog = live_stack.catalog
    review = _real_text(catalog["sentiment"], "positive", 600)
    tweet = _real_text(catalog["disaster"], "disaster", 280)
    photo = next((data_dir() / "pose" / "running").glob("*.jpg"))

    with client:
        sentiment = importlib.import_module(f"{api.__name__}.classify_sentiment")
        answer = sentiment.sync_detailed(client=client, body=models.SentimentText(text=review))
        assert answer.status_code == 200, answer.content
        assert isinstance(answer.parsed, models.Prediction)
        assert answer.parsed.task == "sentiment"
        assert answer.parsed.label in catalog["sentiment"].labels
        assert set(answer.parsed.scores.additional_properties) == set(catalog["sentiment"].labels)

        disaster = importlib.import_module(f"{api.__name__}.classify_disaster")
        answer = disaster.sync_detailed(client=client, body=models.DisasterText(text=tweet))
        assert answer.status_code == 200, answer.content
        assert isinstance(answer.parsed, models.Prediction)
        assert answer.parsed.label in catalog["disaster"].labels
        batch = disaster.sync(client=client, body=models.DisasterTexts(texts=[tweet, review[:280]]))
        assert isinstance(batch, models.BatchPrediction)
        assert [result.label in catalog["disaster"].labels for result in batch.results] == [True, True]

        pose = importlib.import_module(f"{api.__name__}.classify_pose")
        with photo.open("rb") as image:
            upload = models.ImageUpload(image=types.File(payload=image, file_name=photo.name, mime_type="image/jpeg"))
            answer = pose.sync_detailed(client=client, body=upload, top_k=2)
        assert answer.status_code == 200, answer.content
        assert isinstance(answer.parsed, models.ImagePrediction)
        assert answer.parsed.label in catalog["pose"].labels
        assert [item.label in catalog["pose"].labels for item in answer.parsed.top_k] == [True, True]
        assert answer.parsed.top_k[0].label == answer.parsed.label

    anonymous = sdk.Client(base_url=keyed_gateway, timeout=httpx.Timeout(60))
    with anonymous:
        refused = sentiment.sync_detailed(client=anonymous, body=models.SentimentText(text=review))
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.ErrorResponse)
    assert refused.parsed.error.code == "missing_api_key"
