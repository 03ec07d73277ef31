"""The S3 manifest, `models.json`: every published version of every model, and which one is each default.

Publishing writes it (last, with a conditional put), each host's sync reads it and keeps the last one it
applied beside its model store, and the KServe view is derived from it. One typed model for all of them, so
a malformed manifest fails where it is read, naming the field.

    {"models": {<model>: {"default": <version>, "versions": {<version>: {key, sha256, size, created}}}}}
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field


class PublishedVersion(BaseModel):
    """One uploaded archive: its key under the store prefix, its sha256 and size, when it was published."""

    key: str
    sha256: str
    size: int = Field(ge=0)
    created: str


class PublishedModel(BaseModel):
    default: str
    versions: dict[str, PublishedVersion] = Field(default_factory=dict)

    def previous_version(self) -> str | None:
        """The version published just before the current default, if any (versions sort by build time)."""
        older = sorted(v for v in self.versions if v < self.default)
        return older[-1] if older else None


class Manifest(BaseModel):
    models: dict[str, PublishedModel] = Field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes | str) -> Manifest:
        return cls.model_validate_json(raw)

    def dump(self) -> str:
        """The stored form: sorted keys and indented, so diffs of the object stay readable."""
        return json.dumps(self.model_dump(), indent=2, sort_keys=True)
