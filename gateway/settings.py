"""Gateway settings, from environment variables prefixed `GATEWAY_` (see the README's configuration table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelops.catalog import REPO_ROOT


class Settings(BaseSettings):
    # An empty variable means "not set" (compose passes optional settings through as empty strings).
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_ignore_empty=True)

    torchserve_inference_url: str = "http://127.0.0.1:8080"
    torchserve_management_url: str = "http://127.0.0.1:8081"
    torchserve_key_file: Path = REPO_ROOT / "var" / "torchserve" / "key_file.json"
    catalog_path: Path | None = Field(default=None, description="model catalog; default models.toml")

    upstream_timeout_s: float = Field(default=30.0, gt=0, description="wait for one TorchServe answer")
    connect_timeout_s: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=64, ge=1, description="pooled connections to TorchServe")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger request bodies get 413")
    max_headers: int = Field(default=64, ge=8, description="more request headers get 431")
    max_header_bytes: int = Field(default=16_384, ge=1024, description="larger header blocks (names + values) get 431")
    max_batch_texts: int = Field(default=32, ge=1, description="most texts in one {'texts': [...]} request")
    max_image_body_bytes: int = Field(default=33_554_432, ge=1024, description="body limit on image routes")
    max_image_bytes: int = Field(default=10_485_760, ge=1024, description="most bytes in one image")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="most pixels (width x height) in one image")
    max_images: int = Field(default=8, ge=1, description="most images in one request")
    image_forward_shorter_side: int = Field(
        default=512, ge=256, description="images are downscaled to this shorter side before TorchServe"
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503 answers")
    upstream_retries: int = Field(
        default=1, ge=0, le=3, description="re-sends of a prediction TorchServe refused with 503/507 (worker died)"
    )
    api_keys: str = Field(
        default="", repr=False, description="'name:key,name:key' accepted in X-API-Key; empty with no file = open"
    )
    api_keys_file: Path | None = Field(default=None, description="key file of 'name sha256:<hex> [tasks]' lines")
    rate_limit_per_s: float = Field(default=0.0, ge=0, description="requests per second per API key (0 = off)")
    rate_limit_burst: int = Field(default=20, ge=1, description="requests a key may send at once before 429")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
