"""`python -m bench.first_run`: watch a first `make run` from outside, as a newcomer's client would.

Start it right after `make run` (a fresh clone, or after `make clean-state`). Until `--until-recipe` versions
answer on every route (or `--timeout-s`), it sends one request to each catalog route every `--interval-s`
(a light, steady load: the switch from quick to better versions happens under it), and prints when each route
first answered, when each answered with each recipe, and every answer's status. Figures are seconds since
the script started.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

import httpx

from contract.catalog import load_catalog
from modelops.local.config import StackConfig
from modelops.train.data import data_dir


def _request(http: httpx.Client, route: str, kind: str, photo: bytes) -> httpx.Response:
    if kind == "image":
        return http.post(route, files={"image": ("photo.jpg", photo, "image/jpeg")})
    return http.post(route, json={"text": "An evacuation was ordered as the fire reached the town"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.first_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--until-recipe", default="fast")
    parser.add_argument("--interval-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    routes = {spec.route: spec.kind for spec in load_catalog().values()}
    photo = next((data_dir() / "pose" / "running").glob("*.jpg")).read_bytes()
    started = time.monotonic()
    first: dict[str, dict[str, float]] = {route: {} for route in routes}
    statuses: Counter[str] = Counter()
    with httpx.Client(base_url=cfg.gateway_url, timeout=60) as http:
        while time.monotonic() - started < args.timeout_s:
            for route, kind in routes.items():
                try:
                    response = _request(http, route, kind, photo)
                except httpx.TransportError:
                    statuses["unreachable"] += 1  # nothing listens yet: before the stack is up
                    continue
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    recipe = str(response.json()["model"].get("recipe"))
                    if recipe not in first[route]:
                        first[route][recipe] = round(time.monotonic() - started, 1)
                        print(f"{first[route][recipe]:7.1f} s  {route} answers with its {recipe} version", flush=True)
            if all(args.until_recipe in answered for answered in first.values()):
                break
            time.sleep(args.interval_s)
    answered = [min(r.values()) for r in first.values() if r]
    result: dict[str, Any] = {
        "first_answer_on_every_route_s": max(answered) if len(answered) == len(first) else None,
        f"{args.until_recipe}_on_every_route_s": max(
            (r.get(args.until_recipe) or float("inf") for r in first.values()), default=None
        ),
        "first_answers": first,
        "statuses": dict(statuses),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
