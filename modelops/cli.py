"""`modelops <command>` (or `python -m modelops <command>`): build, publish, sync and run the classifiers.

train     fine-tune one task's model into a folder
package   turn a trained folder into a TorchServe archive (.mar)
publish   upload an archive to S3 and record it in the manifest
build     train + package + publish (one task, or every task with nothing published)
sync      download published archives into the model store and register them with TorchServe
rollback  point a model's default at the previous (or a given) version
run       start S3, build what is missing, start TorchServe + gateway, supervise until Ctrl-C
evaluate  score a model on labelled data, in-process or through the gateway
stop      stop what `run` started
torchserve  TorchServe in the foreground at the STACK_* addresses (what the container image runs)
jobs      the bulk job worker (`jobs worker`)
task      add a classifier from your own labelled data (CSV, TSV, JSON Lines or an image folder), list, remove
data      download the built-in tasks' public originals into the data folder (`data fetch`), or show it (`data path`)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from contract.catalog import (
    DEFAULT_RECIPE,
    MAX_ACCURACY_DROP,
    RECIPE_NAMES,
    REPO_ROOT,
    STATE_DIR,
    CatalogError,
    load_catalog,
    served_catalog,
)
from contract.logs import configure_logging, log_event
from contract.torchserve import TorchServeError
from modelops.local.config import StackConfig
from modelops.store import StoreError
from modelops.tasks import TaskError
from modelops.train.data import data_dir

if TYPE_CHECKING:
    from modelops.serve.torchserve import ManagementClient

logger = logging.getLogger("modelops")

WORK_DIR = STATE_DIR / "build"


def _tasks(names: list[str] | None) -> list[str]:
    catalog = load_catalog()
    chosen = names or list(catalog)
    unknown = [n for n in chosen if n not in catalog]
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; the catalog has {', '.join(catalog)}")
    return chosen


def cmd_train(args: argparse.Namespace) -> None:
    from modelops.build import train_model

    spec = load_catalog()[_tasks([args.task])[0]]
    record = train_model(
        spec,
        args.recipe,
        data_dir(args.data),
        Path(args.out),
        max_steps=args.max_steps,
        train_examples=args.train_examples,
        eval_examples=args.eval_examples,
        dev_examples=args.dev_examples,
    )
    print(json.dumps(record["validation"], indent=2))


def cmd_package(args: argparse.Namespace) -> None:
    from modelops.package.archive import package

    spec = load_catalog()[_tasks([args.task])[0]]
    archive = package(
        spec,
        Path(args.trained),
        Path(args.export),
        data_dir(args.data),
        version=args.version,
        variant_max_drop=args.variant_max_drop,
    )
    print(archive)


def cmd_publish(args: argparse.Namespace) -> None:
    from modelops.store.kserve import refresh_kserve_view
    from modelops.store.s3 import ModelStore

    store = ModelStore()
    if args.create_bucket:
        store.ensure_bucket()
    published = store.publish(Path(args.archive), make_default=not args.no_default)
    refresh_kserve_view(store, load_catalog())
    print(json.dumps({k: v for k, v in published.items() if k != "card"}, indent=2))


def cmd_build(args: argparse.Namespace) -> None:
    from modelops.build import build_and_publish, build_missing, recipe_or_default, upgrade_published
    from modelops.store.kserve import refresh_kserve_view, refresh_kserve_view_if_stale
    from modelops.store.s3 import ModelStore

    catalog = load_catalog()
    store = ModelStore()
    store.ensure_bucket()
    if args.task or args.all:
        for name in _tasks(None if args.all else args.task):
            recipe = recipe_or_default(catalog[name], args.recipe)
            build_and_publish(catalog[name], recipe, data_dir(args.data), store, WORK_DIR)
        refresh_kserve_view(store, catalog)
    else:
        build_missing(catalog, args.recipe, data_dir(args.data), store, WORK_DIR)
        if args.upgrade:
            upgrade_published(catalog, args.recipe, data_dir(args.data), store, WORK_DIR)
        refresh_kserve_view_if_stale(store, catalog)


def cmd_sync(args: argparse.Namespace) -> None:
    from modelops.local import torchserve
    from modelops.local.supervisor import key_rotation_period_s
    from modelops.store.s3 import ModelStore

    cfg = StackConfig.from_env()  # STACK_MANAGEMENT_PORT, STACK_STATE_DIR, STACK_MODEL_STORE as `make run` has them
    if args.torchserve_host:
        cfg = dataclasses.replace(cfg, host=args.torchserve_host)
    syncer = torchserve.syncer(cfg, served_catalog(), ModelStore())
    if args.loop:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        if args.rotate_keys:
            every_s = key_rotation_period_s(REPO_ROOT / "config.properties")
            threading.Thread(target=_rotate_keys, args=(syncer.mgmt, every_s, stop), daemon=True).start()
        syncer.run_forever(args.interval, stop)
        return
    outcomes = syncer.run_once()
    print(json.dumps(outcomes, indent=2))
    if any(o == "missing" or o.startswith("failed") for o in outcomes.values()):
        raise SystemExit(1)


def cmd_rollback(args: argparse.Namespace) -> None:
    from modelops.store.kserve import refresh_kserve_view
    from modelops.store.s3 import ModelStore

    catalog = load_catalog()
    store = ModelStore()
    # the catalog's models and those `task add` published: the manifest names both
    known = {spec.model_name for spec in catalog.values()} | set(store.read_manifest().models)
    if args.model not in known:
        raise SystemExit(f"unknown model {args.model!r} (the models: {', '.join(sorted(known))})")
    version = store.set_default(args.model, args.version)
    refresh_kserve_view(store, catalog)
    print(f"{args.model}: default is now {version}; each host's sync switches to it on its next pass")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from modelops.serve.sync import applied_default
    from modelops.store.s3 import ModelStore
    from modelops.tasks.manage import find_task
    from modelops.train.evaluate import evaluate, format_report

    catalog = load_catalog()
    # a catalog task, else one added with `task add` (its published spec)
    spec = catalog[args.task] if args.task in catalog else find_task(args.task, catalog, ModelStore())
    archive = Path(args.archive) if args.archive else None
    if archive is None and not args.via:
        synced = applied_default(StackConfig.from_env().model_store, spec.model_name)
        if synced is None:
            raise SystemExit("no synced archive for this task in model_store/: pass --archive or --via")
        archive = synced[0]
    report = evaluate(spec, Path(args.data), archive=archive, via=args.via, limit=args.limit, batch=args.batch)
    print(format_report(report))
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _rotate_keys(mgmt: ManagementClient, every_s: float, stop: threading.Event) -> None:
    """Mint fresh TorchServe keys at half their lifetime, so readers never hold an expired one (they re-read
    the key file); for deployments without the `make run` supervisor, which does the same."""
    while not stop.wait(every_s):
        try:
            mgmt.rotate_keys()
        except Exception as exc:  # a failed rotation is retried next period; the old keys are still valid
            log_event(logger, "torchserve.key_rotation_failed", logging.ERROR, reason=repr(exc))


def cmd_run(args: argparse.Namespace) -> None:
    from modelops.local import supervisor

    cfg = StackConfig.from_env()
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    # the terminal is for people (`supervisor.Terminal`); the JSON lines go to the log
    configure_logging(args.log_level or "INFO", stream=(cfg.log_dir / "supervisor.log").open("a", encoding="utf-8"))
    supervisor.run(cfg, served_catalog(), args.recipe, data_dir(args.data), args.sync_interval)


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_task_add(args: argparse.Namespace) -> None:
    from modelops.kinds import KINDS
    from modelops.store.s3 import ModelStore
    from modelops.tasks.manage import DataOptions, add_task
    from modelops.tasks.rollout import apply_locally

    # a person reads this command's output: its own steps, not the libraries' load reports
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cfg = StackConfig.from_env()
    store = ModelStore()
    store.ensure_bucket()
    catalog = load_catalog()
    options = DataOptions(args.text_column, args.label_column, args.max_chars, args.folds)
    started = time.monotonic()
    spec, _ = add_task(
        args.name,
        Path(args.data),
        options,
        catalog,
        store,
        WORK_DIR,
        _say,
        description=args.description,
        replace=args.replace,
        min_workers=args.min_workers,
    )
    if apply_locally(cfg, catalog, store, spec.task, routed=True, say=_say, api_key=args.api_key):
        _say(f"serving after {time.monotonic() - started:.0f} s: POST {cfg.gateway_url}{spec.route}")
        _say(f"  try it: {KINDS[spec.kind].example_call.format(url=cfg.gateway_url + spec.route)}")
        _say(f"  its page in the web UI: {cfg.ui_url}/{spec.task}")
        _say(f"  its card (how it was trained, how well it does): GET {cfg.gateway_url}/v1/models/{spec.task}")


def cmd_task_list(_args: argparse.Namespace) -> None:
    from modelops.store.s3 import ModelStore
    from modelops.tasks.manage import list_tasks

    rows = list_tasks(load_catalog(), ModelStore())
    print(f"{'task':<24} {'kind':<6} {'labels':>6}  {'source':<12} version")
    for row in rows:
        print(f"{row['task']:<24} {row['kind']:<6} {row['labels']:>6}  {row['source']:<12} {row['version'] or '-'}")


def cmd_task_remove(args: argparse.Namespace) -> None:
    from modelops.store.s3 import ModelStore
    from modelops.tasks.manage import remove_task
    from modelops.tasks.rollout import apply_locally

    cfg = StackConfig.from_env()
    store, catalog = ModelStore(), load_catalog()
    versions = remove_task(args.name, catalog, store)
    _say(f"unpublished {args.name} ({len(versions)} version(s)): every host's sync unregisters it")
    if apply_locally(cfg, catalog, store, args.name, routed=False, say=_say, api_key=args.api_key):
        _say(f"{cfg.gateway_url}/v1/{args.name} is gone")


# The commands that set up the local S3's environment themselves (`run` starts that S3) or touch no S3.
OWN_S3_SETUP = frozenset({"run", "stop", "torchserve"})


def _use_local_s3(cfg: StackConfig) -> None:
    """The local stack's S3 credentials unless the caller named an S3 of their own (`default_s3_env`'s rule),
    for every command alike: applied once, before any command runs."""
    from modelops.local.s3 import default_s3_env

    for key, value in default_s3_env(cfg).items():
        os.environ.setdefault(key, value)


def cmd_jobs_worker(args: argparse.Namespace) -> None:
    from modelops.jobs.worker import JobWorker, Settings, Slice
    from modelops.store.s3 import ModelStore

    cfg = StackConfig.from_env()
    settings = Settings(args.gateway or cfg.gateway_url, args.api_key, retention_days=args.retention_days)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    worker = JobWorker(ModelStore(), settings)
    if args.job is None:
        worker.run_forever(stop)
        return
    if args.index is None or args.of is None:
        raise SystemExit("--job needs --index (or JOB_COMPLETION_INDEX, as an Indexed Job sets it) and --of")
    try:
        part = Slice(int(args.index), args.of)
    except ValueError as exc:
        raise SystemExit(f"--index: {exc}") from None
    worker.run_job(args.job, part, stop)


def cmd_torchserve(_args: argparse.Namespace) -> None:
    """Run TorchServe in the foreground, configured from config.properties at the `STACK_*` addresses (a
    container sets `STACK_HOST=0.0.0.0`): the only way the addresses change, since TorchServe's own `TS_*`
    variables are off (`enable_envvars_config=false`: whatever sets the JVM's environment could otherwise turn
    token auth off).

    It stays TorchServe's parent rather than becoming it: as a container's PID 1, a process gets no default
    signal handling, and TorchServe's launcher installs none, so `docker stop` waited out its timeout and
    killed it. SIGTERM and SIGINT are forwarded to TorchServe's process group (launcher and JVM), which shuts
    down in a few seconds, and this exits with its status."""
    from modelops.local import torchserve

    cfg = StackConfig.from_env()
    torchserve.prepare(cfg)
    server = subprocess.Popen(torchserve.command(cfg), cwd=cfg.torchserve_dir, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        os.killpg(server.pid, signum)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, forward)
    sys.exit(server.wait())


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from modelops.datasets.fetch import ORIGINALS_CACHE, FetchError, fetch, lacking, load_originals

    root = data_dir(args.data)
    table = load_originals(Path(args.originals) if args.originals else None)
    originals = [o for o in table if not args.only or o.name in args.only]
    todo = lacking(originals, root)
    if not todo:
        print(f"data: {', '.join(o.name for o in originals)} already in {root}")
        return
    try:
        fetch(todo, root, StackConfig.from_env().state_dir / ORIGINALS_CACHE)
    except FetchError as exc:
        print(f"error: data: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_data_path(args: argparse.Namespace) -> None:
    print(data_dir(args.data))


def cmd_stop(_args: argparse.Namespace) -> None:
    from modelops.local import stack

    stopped = stack.stop_all(StackConfig.from_env())
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def build_parser() -> argparse.ArgumentParser:
    """Every command and its options. Apart from `main`, so that the docs test (tests/unit/test_docs.py) can
    check each `modelops <command>` the documentation names against the commands that exist."""
    parser = argparse.ArgumentParser(prog="python -m modelops", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL"),
        help="JSON log lines at this level and above (default INFO; WARNING for `task`, which prints its own steps)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "data folder (default $DATA_DIR, else ../shared/data when it exists, else var/data)"

    p = sub.add_parser("train", help="fine-tune one task")
    p.add_argument("--task", required=True)
    p.add_argument("--recipe", choices=RECIPE_NAMES, default=DEFAULT_RECIPE)
    p.add_argument("--data", help=data_help)
    p.add_argument("--out", required=True, help="folder for the trained model")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke runs)")
    p.add_argument("--train-examples", type=int, help="train on a stratified sample of this many examples")
    p.add_argument("--eval-examples", type=int, help="validate on at most this many held-out examples")
    p.add_argument("--dev-examples", type=int, help="hold out this many training examples for early stopping")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("package", help="build a .mar from a trained folder")
    p.add_argument("--task", required=True)
    p.add_argument("--trained", required=True)
    p.add_argument("--export", default=str(WORK_DIR))
    p.add_argument("--version", help="archive version (default: UTC build time)")
    p.add_argument("--data", help=data_help + " (judges an optimised runtime on the dev slice, reports both splits)")
    p.add_argument(
        "--variant-max-drop",
        type=float,
        default=MAX_ACCURACY_DROP,
        help=f"dev-slice accuracy the optimised runtime may lose and still be served (default {MAX_ACCURACY_DROP}; "
        "1.0 keeps it whatever it scores, as the tests' two-step builds do)",
    )
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("publish", help="upload a .mar as a new version under s3://$MODEL_BUCKET/$MODEL_PREFIX/")
    p.add_argument("archive")
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if missing (local S3)")
    p.add_argument("--no-default", action="store_true", help="publish without making it the default version")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("build", help="train + package + publish")
    p.add_argument("--task", action="append", help="task to (re)build; default: every unpublished task")
    p.add_argument("--all", action="store_true", help="(re)build every task in the catalog")
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="also rebuild, with --recipe, each task whose published default a lower recipe built (quick -> fast)",
    )
    p.add_argument("--recipe", choices=RECIPE_NAMES, default=DEFAULT_RECIPE)
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("sync", help="S3 -> model_store -> TorchServe, without downtime")
    p.add_argument("--loop", action="store_true", help="keep syncing (backs off while passes fail)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between passes in --loop")
    p.add_argument("--rotate-keys", action="store_true", help="with --loop: rotate TorchServe's keys at half-life")
    p.add_argument(
        "--torchserve-host",
        default=os.environ.get("TORCHSERVE_HOST"),
        help="host of TorchServe's APIs, at the standard ports (env TORCHSERVE_HOST; compose: the service name)",
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("rollback", help="set a model's default to the previous (or given) version")
    p.add_argument("model")
    p.add_argument("version", nargs="?", help="version to serve (default: the one before the current default)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("run", help="run the whole local stack in the foreground")
    p.add_argument(
        "--recipe", choices=RECIPE_NAMES, default=DEFAULT_RECIPE, help="recipe for models that are not published yet"
    )
    p.add_argument("--data", help=data_help)
    p.add_argument("--sync-interval", type=float, default=float(os.environ.get("SYNC_INTERVAL_S", "30")))
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("evaluate", help="score a model on a labelled file (in-process, or --via the gateway)")
    p.add_argument("--task", required=True)
    p.add_argument(
        "--data",
        required=True,
        help="a file in the shared data's format (CSV, or pose labels.csv), or the data folder itself to score "
        "the validation split that training held out",
    )
    p.add_argument("--via", help="gateway base URL, e.g. http://127.0.0.1:8000: evaluate the whole serving path")
    p.add_argument("--archive", help="a .mar to load in-process (default: the synced default in model_store/)")
    p.add_argument("--limit", type=int, help="only the first N rows")
    p.add_argument("--batch", type=int, help="examples per request (default 32 texts, 8 images; 1 for latency)")
    p.add_argument("--json", help="also write the report to this file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("stop", help="stop the local stack")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser(
        "torchserve", help="run TorchServe in the foreground at the STACK_* addresses (what a container runs)"
    )
    p.set_defaults(func=cmd_torchserve)

    jobs = sub.add_parser("jobs", help="bulk jobs (POST /v1/jobs): the worker that classifies them")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    p = job_commands.add_parser(
        "worker", help="claim shards of unfinished jobs in S3 and classify them through the gateway, until stopped"
    )
    p.add_argument("--gateway", default=os.environ.get("JOB_GATEWAY_URL"), help="the gateway (env JOB_GATEWAY_URL)")
    p.add_argument(
        "--api-key", default=os.environ.get("JOB_WORKER_API_KEY"), help="a gateway API key (env JOB_WORKER_API_KEY)"
    )
    p.add_argument(
        "--retention-days",
        type=float,
        default=float(os.environ.get("JOB_RETENTION_DAYS", "7")),
        help="delete finished jobs, results included, after this many days (env JOB_RETENTION_DAYS)",
    )
    p.add_argument(
        "--job", help="only this job, then exit: one index of a Kubernetes Indexed Job (deploy/k8s/bulk-job.yaml)"
    )
    p.add_argument(
        "--index",
        default=os.environ.get("JOB_COMPLETION_INDEX"),
        help="with --job: this index's shards (shard %% --of == index); default JOB_COMPLETION_INDEX",
    )
    p.add_argument("--of", type=int, help="with --job: how many indexes share the job (the Indexed Job's completions)")
    p.set_defaults(func=cmd_jobs_worker)

    task = sub.add_parser("task", help="your own classifiers: add one from labelled data, list, remove")
    tasks = task.add_subparsers(dest="task_command", required=True)
    p = tasks.add_parser(
        "add",
        help="check the data, train (settings chosen by cross-validation), publish; the running stack serves it",
        description="A CSV, TSV or JSON Lines file of labelled texts, or a folder of images with one sub-folder "
        "per label. Nothing is trained or published when the data has a problem: each is named with its row "
        "and the fix.",
    )
    p.add_argument("name", help="the task's name: its route /v1/<name> and its UI page")
    p.add_argument("--data", required=True, help="the labelled file, or the image folder")
    p.add_argument("--text-column", default="text", help="the column holding each text (default: text)")
    p.add_argument("--label-column", default="label", help="the column holding each label (default: label)")
    p.add_argument("--max-chars", type=int, default=10_000, help="the longest text accepted (default 10000)")
    p.add_argument("--folds", type=int, default=5, choices=range(2, 11), metavar="2..10", help="cross-validation folds")
    p.add_argument("--description", help="what the task does, for the API docs and the UI")
    p.add_argument("--replace", action="store_true", help="retrain a task added before, on this data")
    p.add_argument(
        "--min-workers",
        type=int,
        default=0,
        choices=range(0, 9),
        metavar="0..8",
        help="workers kept while nobody calls it (default 0: scaled to zero when idle, started by its next call)",
    )
    _api_key_argument(p)
    p.set_defaults(func=cmd_task_add)
    p = tasks.add_parser("list", help="every task: the catalog's and the ones added")
    p.set_defaults(func=cmd_task_list)
    p = tasks.add_parser("remove", help="unpublish a task added with `task add`; its route goes away")
    p.add_argument("name")
    _api_key_argument(p)
    p.set_defaults(func=cmd_task_remove)

    data = sub.add_parser("data", help="the built-in tasks' training data")
    datas = data.add_subparsers(dest="data_command", required=True)
    p = datas.add_parser(
        "fetch",
        help="download the public originals the data folder lacks, check their pinned SHA-256, lay them out",
        description="Behind a proxy set HTTPS_PROXY; with a mirror holding the same files set DATA_MIRROR to its "
        "folder URL.",
    )
    p.add_argument("--data", help=data_help)
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these originals (imdb, disaster, pose)")
    p.add_argument("--originals", help="another table of URLs and checksums (default $DATA_ORIGINALS, else the pinned)")
    p.set_defaults(func=cmd_data_fetch)
    p = datas.add_parser("path", help="print the data folder the commands use")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=cmd_data_path)
    return parser


def _api_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MODELOPS_API_KEY"),
        help="a key of the local gateway's, when it has API keys, to wait for the route (env MODELOPS_API_KEY)",
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or ("WARNING" if args.command == "task" else "INFO"))
    if args.command not in OWN_S3_SETUP:
        _use_local_s3(StackConfig.from_env())
    try:
        args.func(args)
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (StoreError, TorchServeError, CatalogError, FileNotFoundError) as exc:
        # Expected operational failures: one clear line, no traceback.
        log_event(logger, "command.failed", logging.ERROR, command=args.command, reason=str(exc))
        raise SystemExit(1) from None
