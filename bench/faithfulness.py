"""`python -m bench.faithfulness --task T --via URL`: are the explanations faithful? A deletion test through
the serving stack.

For each validation item: ask `/v1/<task>/explain`, then classify the item twice through `/v1/<task>`, once
without its `k` most supporting parts (the words, or the photo cells, with the largest positive weight) and
once without `k` parts drawn at random (seeded). The explanation is faithful for that item when removing the
top parts lowers the predicted label's probability more than removing the random ones. The script prints the
share of such items, both mean drops, and the explain calls' latency (p50/p95, overall and, for texts, for
150-250-word texts).

A photo's cells cover the centre crop the model classifies; they are greyed out in the photo as sent, at the
place the crop comes from (shorter side scaled to `resize_to`, centre `image_size` square), so the masked
photo travels the same path as any upload.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from bench.loadgen import percentile
from contract.catalog import ImageTask, TaskSpec, load_catalog
from handlers.image_decode import to_rgb
from handlers.word_occlusion import without, words_of
from modelops.train.data import Example, data_dir
from modelops.train.evaluate import read_labelled

TOP_WORDS = 5
TOP_CELLS = 5
GREY = (127, 127, 127)  # the normalisation's mean: what the handler's occlusion paints


def _probability(answer: dict[str, Any], label: str) -> float:
    if "scores" in answer:
        return float(answer["scores"][label])
    return next((float(r["score"]) for r in answer["top_k"] if r["label"] == label), 0.0)


def masked_photo(data: bytes, cells: Sequence[tuple[int, int]], grid: int, spec: ImageTask) -> bytes:
    """The photo with the given crop cells (row, column) painted grey where the served crop takes them from."""
    image = to_rgb(Image.open(io.BytesIO(data)))
    scale = spec.image.resize_to / min(image.size)
    size = spec.image.image_size
    left = (max(size, round(image.width * scale)) - size) // 2
    top = (max(size, round(image.height * scale)) - size) // 2
    draw = ImageDraw.Draw(image)
    for row, col in cells:
        x0, x1 = left + col * size / grid, left + (col + 1) * size / grid
        y0, y1 = top + row * size / grid, top + (row + 1) * size / grid
        draw.rectangle([x0 / scale, y0 / scale, x1 / scale - 1, y1 / scale - 1], fill=GREY)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _explain(http: httpx.Client, route: str, **kwargs: Any) -> tuple[dict[str, Any], float]:
    """One explanation and its round trip in seconds; a 429 (another client holds the model's explanation
    slot) is retried after its Retry-After, as a well-behaved client would, and not timed."""
    while True:
        started = time.perf_counter()
        response = http.post(f"{route}/explain", **kwargs)
        seconds = time.perf_counter() - started
        if response.status_code != 429:
            response.raise_for_status()
            return response.json(), seconds
        time.sleep(float(response.headers.get("Retry-After", "1")))


def _text_item(http: httpx.Client, spec: TaskSpec, text: str, rng: random.Random) -> tuple[float, float, float]:
    answer, seconds = _explain(http, spec.route, json={"text": text})
    words = words_of(text)
    weights = [w["weight"] for w in answer["explanation"]["words"]]
    top = sorted(range(len(words)), key=lambda i: -weights[i])[:TOP_WORDS]
    drawn = rng.sample(range(len(words)), min(TOP_WORDS, len(words)))
    # a short tweet may lose every word: "." stands for the empty text the API refuses
    variants = [without(text, [words[i] for i in chosen]).strip() or "." for chosen in (top, drawn)]
    after = http.post(spec.route, json={"texts": variants})
    after.raise_for_status()
    label = answer["label"]
    base = answer["score"]
    top_p, random_p = (_probability(r, label) for r in after.json()["results"])
    return base - top_p, base - random_p, seconds


def _image_item(http: httpx.Client, spec: ImageTask, path: Path, rng: random.Random) -> tuple[float, float, float]:
    data = path.read_bytes()
    answer, seconds = _explain(http, spec.route, files={"image": (path.name, data)}, params={"top_k": 1})
    grid = answer["explanation"]["grid"]
    cells = [(r, c) for r in range(len(grid)) for c in range(len(grid))]
    top = sorted(cells, key=lambda cell: -grid[cell[0]][cell[1]])[:TOP_CELLS]
    drawn = rng.sample(cells, TOP_CELLS)
    files = [
        ("images", (f"{name}.png", masked_photo(data, chosen, len(grid), spec)))
        for name, chosen in (("top", top), ("random", drawn))
    ]
    after = http.post(spec.route, files=files, params={"top_k": len(spec.labels)})
    after.raise_for_status()
    label = answer["label"]
    top_p, random_p = (_probability(r, label) for r in after.json()["results"])
    return answer["score"] - top_p, answer["score"] - random_p, seconds


def run(spec: TaskSpec, data: Path, via: str, items: int, seed: int = 7, api_key: str | None = None) -> dict[str, Any]:
    """The deletion test on the first `items` validation items; returns the figures `main` prints."""
    examples: list[Example] = read_labelled(spec, data, items)
    rng = random.Random(seed)
    headers = {"X-API-Key": api_key} if api_key else {}
    rows = []
    with httpx.Client(base_url=via.rstrip("/"), timeout=120, headers=headers) as http:
        for example in examples:
            if spec.kind == "image":
                top, drawn, seconds = _image_item(http, spec, Path(example.text), rng)
                rows.append((top, drawn, seconds, 0))
            else:
                top, drawn, seconds = _text_item(http, spec, example.text, rng)
                rows.append((top, drawn, seconds, len(words_of(example.text))))
    faithful = sum(top > drawn for top, drawn, _, _ in rows)
    latencies = [seconds * 1000 for _, _, seconds, _ in rows]
    report: dict[str, Any] = {
        "task": spec.task,
        "items": len(rows),
        "removed": f"top {TOP_CELLS} of 49 cells" if spec.kind == "image" else f"top {TOP_WORDS} words",
        "faithful_share": round(faithful / len(rows), 4),
        "mean_drop_top": round(statistics.fmean(r[0] for r in rows), 4),
        "mean_drop_random": round(statistics.fmean(r[1] for r in rows), 4),
        "explain_ms_p50": round(percentile(sorted(latencies), 0.5), 1),
        "explain_ms_p95": round(percentile(sorted(latencies), 0.95), 1),
    }
    mid = [seconds * 1000 for _, _, seconds, words in rows if 150 <= words <= 250]
    if spec.kind == "text" and mid:
        report |= {
            "texts_150_250_words": len(mid),
            "explain_ms_p50_150_250_words": round(percentile(sorted(mid), 0.5), 1),
            "explain_ms_p95_150_250_words": round(percentile(sorted(mid), 0.95), 1),
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faithfulness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", help="task(s) to test (default: every catalog task)")
    parser.add_argument("--via", default="http://127.0.0.1:8000", help="gateway base URL")
    parser.add_argument("--items", type=int, default=200, help="validation items per task")
    parser.add_argument("--data", help="data folder (default $DATA_DIR or ../shared/data)")
    parser.add_argument("--api-key", help="X-API-Key, for a gateway with keys")
    parser.add_argument("--json", help="also write the reports to this file")
    args = parser.parse_args(argv)
    catalog = load_catalog()
    reports = []
    for task in args.task or list(catalog):
        reports.append(run(catalog[task], data_dir(args.data), args.via, args.items, api_key=args.api_key))
        print(json.dumps(reports[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
