"""`python -m bench.blend_rows --task sentiment --recipe fast`: a text recipe trained as the build trains it,
with every training row its encoder never saw among the blend rows, and BASELINES.md's NB-weighted LR scored on
them too.

Why: the build chooses the blend weight on the dev slice plus `blend_examples` of those rows (seconds of
scoring); this run scores all of them (for sentiment `fast`, 19,564 reviews besides the dev slice, about five
minutes more), so the served blend, each member and the baseline are compared, paired, on some twenty thousand
rows none of them trained on: intervals a quarter of a point wide, where the validation split's 800 reviews
give two points. Prints the `blend` record (the model card's section) and writes the trained folder to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contract.catalog import DEFAULT_RECIPE, TextRecipe, TextTask, load_catalog
from contract.logs import configure_logging
from modelops.train.data import data_dir
from modelops.train.text import train_text

EVERY_UNSEEN_ROW = 10**9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blend_rows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", required=True, help="folder for the trained model and its training.json")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    spec = load_catalog()[args.task]
    recipe = spec.recipe(args.recipe) if isinstance(spec, TextTask) else None
    if not isinstance(spec, TextTask) or not isinstance(recipe, TextRecipe) or not recipe.linear_member:
        sys.exit(f"{args.task} {args.recipe}: not a text recipe with a linear member")
    studied = recipe.model_copy(update={"blend_examples": EVERY_UNSEEN_ROW, "baselines": True})
    record = train_text(spec, studied, data_dir(args.data), Path(args.out))
    shown = {key: record[key] for key in ("members", "blend", "serving", "train_seconds")}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
