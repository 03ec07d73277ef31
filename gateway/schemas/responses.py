"""Answer models of the prediction, explanation, model card and bulk job routes: FastAPI publishes them in the
OpenAPI document, and the routes that return a model have their answers checked against it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from contract.jobs import JobState


class ModelRef(BaseModel):
    name: str
    version: str
    recipe: str | None = Field(
        default=None,
        description="the recipe that built this version: `quick` (served first, minutes after a fresh start, until "
        "a better one replaces it), `fast`, `full`, or `gpu`",
    )


class Prediction(BaseModel):
    task: str
    label: str
    score: float = Field(description="probability of `label`")
    scores: dict[str, float] = Field(description="probability of every label")
    model: ModelRef
    latency_ms: float = Field(
        description="model server round trip as seen by the gateway: this text's, or its batch body's (the texts "
        "of one body travel to the model server together)"
    )


class BatchPrediction(BaseModel):
    results: list[Prediction] = Field(description="one result per input text, in input order")


class MemberScores(BaseModel):
    blend_weight: float = Field(description="this member's weight in the blend of probabilities")
    label: str = Field(description="the label this member alone would give")
    score: float
    scores: dict[str, float]


class WordWeight(BaseModel):
    start: int = Field(description="offset of the word's first character in the request text")
    end: int = Field(description="offset just past the word's last character")
    word: str
    weight: float = Field(
        description="drop of the predicted label's blended probability (before the temperature) when the word "
        "is removed: positive words support the label, negative ones argue against it"
    )
    members: dict[str, float] | None = Field(
        default=None, description="each blended member's share of `weight` (they add up to it)"
    )


class TextExplanation(BaseModel):
    method: str = Field(description="`occlusion`: each word removed in turn, the text classified again")
    target: str = Field(description="the label explained (the predicted one)")
    words: list[WordWeight] = Field(description="every word of the text, in order")
    members: dict[str, MemberScores] = Field(description="what each member of the blend answered on its own")
    encoder_words_per_pass: int = Field(
        description="neighbouring words occluded together in one encoder pass (1: word by word); they share the "
        "encoder's part of the weight equally"
    )


class ExplainedPrediction(Prediction):
    explanation: TextExplanation


class ExplainedBatch(BaseModel):
    results: list[ExplainedPrediction] = Field(description="one result per input text, in input order")


class LabelScore(BaseModel):
    label: str
    score: float


class ImagePrediction(BaseModel):
    task: str
    label: str
    score: float = Field(description="probability of `label`")
    top_k: list[LabelScore] = Field(description="the most probable labels, best first")
    model: ModelRef
    latency_ms: float = Field(description="model server round trip for this image, as seen by the gateway")


class ImageBatchPrediction(BaseModel):
    results: list[ImagePrediction] = Field(description="one result per image, in request order")


class ImageExplanation(BaseModel):
    method: str = Field(description="`occlusion`: each grid cell greyed out in turn, the photo classified again")
    target: str = Field(description="the label explained (the predicted one)")
    grid: list[list[float]] = Field(
        description="rows of cells over the classified centre crop, top to bottom, left to right: how much the "
        "predicted label's probability (before the temperature) drops without the cell"
    )
    input_size: int = Field(description="side in pixels of the square crop the model classified")
    overlay_png_base64: str | None = Field(
        default=None, description="with `?overlay=true`: the crop with the grid painted over it (red supports)"
    )


class ExplainedImagePrediction(ImagePrediction):
    explanation: ImageExplanation


class ExplainedImageBatch(BaseModel):
    results: list[ExplainedImagePrediction] = Field(description="one result per image, in request order")


class ModelCardAnswer(BaseModel):
    task: str
    model_name: str
    version: str | None = Field(description="the version TorchServe serves by default")
    card: dict[str, Any] = Field(
        description="`model_card.json` of the loaded archive: recipe, base checkpoint, data (hashes, split sizes), "
        "validation accuracy with its 95% interval, macro-F1, calibration error, per-class figures, confusion "
        "matrix, runtime variant, build time"
    )


class JobRows(BaseModel):
    total: int
    done: int = Field(description="rows answered so far, refused ones included")
    refused: int = Field(description="rows answered with their own error (an empty text, a text over the limit, ...)")


class PinnedModel(BaseModel):
    name: str
    version: str | None = Field(
        description="the version pinned for the whole job; null where the upstream cannot name versions (a KServe "
        "predictor), and then each result line names the version that answered it"
    )


class JobView(BaseModel):
    id: str
    task: str
    state: JobState
    rows: JobRows
    refused: dict[str, int] = Field(description="refused rows by error code")
    rows_per_s: float | None
    eta_s: float | None = Field(description="seconds to go at the rate so far, while running")
    model: PinnedModel
    input: str = Field(description="the input file's name")
    created: str = Field(description="UTC, ISO 8601, like the other two")
    started: str | None = Field(description="when a worker took the job's first shard")
    finished: str | None
    reason: str | None = Field(description="why the job failed")
    results: str | None = Field(description="where the results are, once the job has succeeded")


class JobList(BaseModel):
    jobs: list[JobView]
