"""The documentation checked against the code it describes.

A renamed setting, Make target, command, module, heading or catalog field otherwise leaves the docs quietly
wrong: a reader copies a command that no longer exists or follows a link to a section that moved. Each check
here reads the Markdown and compares it with the objects the docs describe (the gateway's settings, the local
stack's configuration, the CLI's parser, the Makefile, the catalog's pydantic models). Nothing is started and
nothing is fetched, so it runs with the unit tests. A failure names the page, what it says that is not so,
and what to change.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from contract.catalog import (
    ImageHeadsRecipe,
    ImageRecipe,
    ImageTask,
    TextHeadsRecipe,
    TextRecipe,
    TextTask,
    parse_catalog,
    parse_task_document,
    task_document,
)
from gateway.settings import Settings
from modelops.cli import build_parser
from modelops.local.config import StackConfig

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIGURATION = REPO / "docs" / "configuration.md"
# The packages whose source may read a JOB_ or UI_ variable (bench/ and the tests configure nothing).
SERVICE_PACKAGES = ("contract", "gateway", "handlers", "modelops", "ui")
# Top-level packages of this repository: `python -m <one of them>[.module]` must name a module that exists.
LOCAL_PACKAGES = frozenset({*SERVICE_PACKAGES, "bench"})
# An inline code span: a run of backticks, the code, the same run again (CommonMark's rule).
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", flags=re.DOTALL)


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# --- reading Markdown ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Page:
    """A Markdown page split into what the reader sees as prose and what they would copy as code."""

    prose: str  # every line outside fenced code blocks (inline code spans still in it)
    blocks: list[str]  # each fenced code block's text, continuation lines joined

    @property
    def paragraphs(self) -> list[str]:
        """The prose by blank-line-separated blocks: a code span never crosses one, so a stray backtick
        cannot pair with one paragraphs away."""
        return re.split(r"\n[ \t]*\n", self.prose)

    @property
    def inline_code(self) -> list[str]:
        """Inline code spans of the prose, whitespace (line breaks in a span included) collapsed."""
        return [" ".join(span.split()) for text in self.paragraphs for _, span in CODE_SPAN.findall(text)]

    @property
    def prose_without_code(self) -> str:
        """The prose with every inline code span emptied, so that nothing quoted as code reads as a link."""
        return "\n\n".join(CODE_SPAN.sub("``", text) for text in self.paragraphs)

    @property
    def code(self) -> list[str]:
        """Every piece of code on the page, line by line: the blocks' lines and the inline spans."""
        lines = [line for block in self.blocks for line in block.splitlines()]
        return lines + self.inline_code


def read_page(path: Path) -> Page:
    prose: list[str] = []
    blocks: list[str] = []
    fence: str | None = None
    block: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and marker:
            fence = marker.group(1)
            block = []
        elif fence is not None and stripped.startswith(fence) and not stripped[len(fence) :].strip():
            blocks.append(re.sub(r"\\\n\s*", " ", "\n".join(block)))
            fence = None
        elif fence is not None:
            block.append(line)
        else:
            prose.append(line)
    return Page("\n".join(prose), blocks)


def shell_commands(code_line: str) -> Iterator[list[str]]:
    """The simple commands of one line of shell, as word lists: a comment dropped, split at `&&`, `||`, `;`,
    `|` and `(`, leading `VAR=value` assignments dropped (`STACK_GATEWAY_PORT=9000 make run` is `make run`)."""
    line = re.sub(r"^\s*[$>]\s+", "", code_line)  # a console prompt
    line = re.sub(r"(^|\s)#.*", "", line)
    line = re.sub(r"\d*[<>]+&?\s*\S*", " ", line)  # redirections: `> log`, `2>&1`
    for command in re.split(r"&&|\|\||[;|()]|\$\(", line):
        words = command.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words.pop(0)
        if words:
            yield words


def headings_and_anchors(path: Path) -> set[str]:
    """The anchors a link into `path` may use: its headings' GitHub slugs (a repeated heading's second slug
    gets `-1`, and so on) and any explicit `<a id=...>` / `<a name=...>`."""
    page = read_page(path)
    anchors: set[str] = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", page.prose))
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", page.prose, flags=re.MULTILINE):
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the visible text (links and code marks removed), lower-cased, every
    character but letters, digits, `_`, `-` and spaces dropped, each space turned into `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_links(page: Page) -> list[str]:
    """The targets of the page's inline links and images, outside code."""
    prose = page.prose_without_code
    pattern = r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
    return re.findall(pattern, prose)


# --- 1. settings: every variable documented, every documented variable real ---------------------------------


def _environment_reads(prefix: str) -> set[str]:
    """The `<prefix>...` variables the service code reads by name: `os.environ.get("X")`, `os.getenv("X")`,
    `os.environ["X"]`, in any module of SERVICE_PACKAGES."""
    names: set[str] = set()
    for package in SERVICE_PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                key: ast.expr | None = None
                if isinstance(node, ast.Call) and node.args:
                    func = ast.unparse(node.func)
                    if func.endswith(("environ.get", "getenv")):
                        key = node.args[0]
                elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
                    key = node.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith(prefix):
                    names.add(key.value)
    return names


def real_settings() -> dict[str, tuple[set[str], str]]:
    """Per prefix: the variables that exist, and where they come from (for the failure message)."""
    return {
        "GATEWAY_": (
            {f"GATEWAY_{name.upper()}" for name in Settings.model_fields},
            "fields of gateway/settings.py's Settings (pydantic-settings, env_prefix GATEWAY_)",
        ),
        "STACK_": (
            {f"STACK_{item.name.upper()}" for item in dataclasses.fields(StackConfig)},
            "fields of modelops/local/config.py's StackConfig (StackConfig.from_env reads STACK_<FIELD>)",
        ),
        "JOB_": (_environment_reads("JOB_"), "variables the job worker's code reads (os.environ)"),
        "UI_": (_environment_reads("UI_"), "variables the UI's code reads (os.environ)"),
    }


@pytest.mark.parametrize("prefix", ["GATEWAY_", "STACK_", "JOB_", "UI_"])
def test_every_setting_is_documented_and_every_documented_one_exists(prefix: str) -> None:
    real, source = real_settings()[prefix]
    assert real, f"found no {prefix} variables in the code at all: has the way they are read changed?"
    text = CONFIGURATION.read_text(encoding="utf-8")
    documented = set(re.findall(rf"\b{prefix}[A-Z0-9_]*[A-Z0-9]\b", text))
    problems = [
        f"{_rel(CONFIGURATION)} does not document {name} (one of the {source}): add a row for it"
        for name in sorted(real - documented)
    ] + [
        f"{_rel(CONFIGURATION)} documents {name}, which is not one of the {source}: remove it or correct its name"
        for name in sorted(documented - real)
    ]
    assert not problems, "\n".join(problems)


# --- 2. make targets ----------------------------------------------------------------------------------------


def makefile_targets() -> set[str]:
    """The Makefile's targets: every rule's head (variable assignments and special targets left out) and the
    names it declares .PHONY."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for match in re.finditer(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)", text, flags=re.MULTILINE):
        targets.update(name for name in match.group(1).split() if not name.startswith("."))
    for phony in re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE):
        targets.update(phony.split())
    return targets


def make_targets_named(page: Page) -> set[str]:
    """Every target of every `make ...` command in the page's code (options and VAR=value skipped). Code that
    quotes make in a message rather than running it (`make run cannot start: ...`) has a word no command
    line of make could hold, and is not a command."""
    named: set[str] = set()
    for line in page.code:
        for words in shell_commands(line):
            if words[0] != "make":
                continue
            arguments = [word for word in words[1:] if not (word.startswith("-") or "=" in word)]
            if all(re.fullmatch(r"[A-Za-z0-9_.-]+", word) for word in arguments):
                named.update(arguments)
    return named


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_make_target_named_exists(page: Path) -> None:
    missing = sorted(make_targets_named(read_page(page)) - makefile_targets())
    assert not missing, "\n".join(
        f"{_rel(page)} names `make {target}`, but the Makefile has no target {target!r}: "
        "correct the command in the doc (or add the target)"
        for target in missing
    )


# --- 3. modelops commands and python -m modules -------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def modelops_commands_named(page: Page) -> set[tuple[str, ...]]:
    """(command,) or (command, subcommand) for each `modelops ...` / `python -m modelops ...` in the page's
    code; a placeholder (`<command>`) or an option where the command goes is not a command."""
    named: set[tuple[str, ...]] = set()
    for line in page.code:
        for words in shell_commands(line):
            for index, word in enumerate(words):
                runs_cli = word == "modelops" and (index == 0 or words[index - 1] == "-m")
                if not (runs_cli or word.endswith("/bin/modelops")):
                    continue
                command = tuple(_leading_names(words[index + 1 : index + 3]))
                if command:
                    named.add(command)
    return named


def _leading_names(words: list[str]) -> Iterator[str]:
    for word in words:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", word):
            return
        yield word


def modules_run(page: Page) -> set[str]:
    """Every `python -m <module>` in the page's code whose module is one of this repository's packages."""
    modules: set[str] = set()
    for line in page.code:
        for words in shell_commands(line):
            for flag, module in itertools.pairwise(words):
                if flag == "-m" and module.split(".")[0] in LOCAL_PACKAGES:
                    modules.add(module.rstrip(".,:;"))
    return modules


def _runnable(module: str) -> bool:
    """True when `python -m module` finds it here: a module file, or a package with a `__main__`."""
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_command_and_module_named_exists(page: Path) -> None:
    markdown = read_page(page)
    commands = _subcommands(build_parser())
    problems: list[str] = []
    for named in sorted(modelops_commands_named(markdown)):
        command = commands.get(named[0])
        if command is None:
            problems.append(
                f"{_rel(page)} names `modelops {named[0]}`, which is not a command of modelops/cli.py "
                f"(there are: {', '.join(commands)}): correct the doc"
            )
            continue
        subcommands = _subcommands(command)
        if subcommands and len(named) > 1 and named[1] not in subcommands:
            problems.append(
                f"{_rel(page)} names `modelops {' '.join(named)}`, but `{named[0]}` has only "
                f"{', '.join(subcommands)}: correct the doc"
            )
    problems += [
        f"{_rel(page)} runs `python -m {module}`, but there is no module {module} in this repository "
        f"(no {module.replace('.', '/')}.py, nor a package with __main__.py): correct the doc"
        for module in sorted(modules_run(markdown))
        if not _runnable(module)
    ]
    assert not problems, "\n".join(problems)


# --- 4. links and anchors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems: list[str] = []
    for target in markdown_links(read_page(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):  # http:, https:, mailto:
            continue
        path_part, _, anchor = unquote(target).partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            problems.append(f"{_rel(page)} links to {target}, but {path_part} does not exist: correct the link")
            continue
        if anchor and linked.suffix == ".md" and anchor not in headings_and_anchors(linked):
            problems.append(
                f"{_rel(page)} links to {target}, but {_rel(linked)} has no heading whose anchor is #{anchor}: "
                "point the link at an existing heading (anchors are GitHub's: lower case, punctuation dropped, "
                "spaces as -)"
            )
    assert not problems, "\n".join(problems)


# --- 5. the catalog tables ----------------------------------------------------------------------------------

CATALOG_SECTION = "## Catalog: per task and per recipe"
KindModels = dict[str, tuple[type[BaseModel], ...]]
TASKS: KindModels = {"all": (TextTask, ImageTask), "text": (TextTask,), "image": (ImageTask,)}
FINETUNE: KindModels = {"all": (TextRecipe, ImageRecipe), "text": (TextRecipe,), "image": (ImageRecipe,)}
HEADS: KindModels = {
    "all": (TextHeadsRecipe, ImageHeadsRecipe),
    "text": (TextHeadsRecipe,),
    "image": (ImageHeadsRecipe,),
}
# The section's tables by the heading above each, grouped by the models their rows describe (the `for` column
# picks them): every field of each group's models must be listed in one of the group's tables.
CATALOG_GROUPS: dict[tuple[str, ...], KindModels] = {
    ("Task fields", "Text and image input"): TASKS,
    ("Fine-tuning recipes",): FINETUNE,
    ("Heads recipes",): HEADS,
}
TASK_TABLES = ("Task fields", "Text and image input")


@dataclasses.dataclass(frozen=True)
class Row:
    table: str
    field: str
    kinds: str
    required: bool


def catalog_rows() -> list[Row]:
    """The rows of every table in the configuration page's catalog section, one per field named."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert CATALOG_SECTION in text, f"{_rel(CONFIGURATION)} has no '{CATALOG_SECTION}' section any more"
    section = text.split(CATALOG_SECTION, 1)[1].split("\n## ", 1)[0]
    rows: list[Row] = []
    for part in section.split("\n### ")[1:]:
        heading, _, body = part.partition("\n")
        table = [line for line in body.splitlines() if line.startswith("|")]
        if not table:
            continue
        header = [cell.strip() for cell in table[0].strip("|").split("|")]
        assert {"field", "for", "required"} <= set(header), (
            f"{_rel(CONFIGURATION)}: the table under '### {heading.strip()}' needs the columns field, for and "
            f"required (it has {', '.join(header)})"
        )
        for line in table[2:]:
            cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=False))
            for field in re.findall(r"`([^`]+)`", cells["field"]):
                rows.append(Row(heading.strip(), field, cells["for"], cells["required"].startswith("yes")))
    return rows


def _nested_model(annotation: object) -> type[BaseModel] | None:
    """The one pydantic model a field holds, alone or as the items of a tuple/list; not through a dict (the
    recipes are tables of their own)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is dict:
        return None
    if origin in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        found = {model for arg in typing.get_args(annotation) if (model := _nested_model(arg)) is not None}
        return found.pop() if len(found) == 1 else None
    return None


def _field(model: type[BaseModel], path: str) -> FieldInfo | None:
    """The field a dotted path names (`text.examples[].label`), or None when there is none."""
    *parents, last = path.split(".")
    current: type[BaseModel] | None = model
    for part in parents:
        info = current.model_fields.get(part.removesuffix("[]")) if current else None
        current = _nested_model(info.annotation) if info else None
    return current.model_fields.get(last) if current else None


def _all_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        nested = _nested_model(info.annotation)
        yield prefix + name, info
        if nested is not None:
            items = typing.get_origin(info.annotation) in (tuple, list)
            yield from _all_fields(nested, f"{prefix}{name}{'[]' if items else ''}.")


def _accepted_beside(field: str, models: tuple[type[BaseModel], ...]) -> bool:
    """A documented task key that is not a field (`route`): accepted when a catalog task given it, with the
    value it derives, still parses."""
    catalog = parse_catalog((REPO / "models.toml").read_text(encoding="utf-8"))
    for model in models:
        spec = next((spec for spec in catalog.values() if isinstance(spec, model)), None)
        if spec is None or not hasattr(spec, field):
            return False
        try:
            parse_task_document({**task_document(spec), field: getattr(spec, field)})
        except ValueError:
            return False
    return True


def test_the_catalog_tables_list_every_field_as_the_models_define_it() -> None:
    rows = catalog_rows()
    page = _rel(CONFIGURATION)
    known = {heading: kinds for headings, kinds in CATALOG_GROUPS.items() for heading in headings}
    found = {row.table for row in rows}
    problems = [
        f"{page}: the catalog section has no '### {heading}' table any more: keep it, or update CATALOG_GROUPS "
        "in tests/unit/test_docs.py to the new layout"
        for heading in known
        if heading not in found
    ] + [
        f"{page}: the catalog table under '### {heading}' is not one tests/unit/test_docs.py knows: add it to "
        "CATALOG_GROUPS with the models it describes"
        for heading in sorted(found - set(known))
    ]
    for row in rows:
        problems += _row_problems(page, row, known.get(row.table, {}))
    for headings, kinds in CATALOG_GROUPS.items():
        for kind in ("text", "image"):
            (model,) = kinds[kind]
            listed = {row.field for row in rows if row.table in headings and row.kinds in ("all", kind)}
            problems += [
                f"{page}: the catalog tables do not list '{path}', a {_required_word(info)} field of "
                f"{model.__name__} (contract/catalog.py): add a row for it under '### {headings[-1]}' "
                f"(for {kind}, or all)"
                for path, info in _all_fields(model)
                if path not in listed
            ]
    assert not problems, "\n".join(dict.fromkeys(problems))


def _required_word(info: FieldInfo) -> str:
    return "required" if info.is_required() else "optional"


def _row_problems(page: str, row: Row, kinds: KindModels) -> list[str]:
    """What is wrong with one documented field: not a field, listed for a kind without it, or its required
    column not what the model says (a field without a default is required)."""
    where = f"{page}: '{row.field}' ({row.table})"
    if row.kinds not in kinds:
        return [f"{where} is for '{row.kinds}': write all, text or image in the `for` column"]
    models = kinds[row.kinds]
    infos = {model.__name__: _field(model, row.field) for model in models}
    if all(info is None for info in infos.values()):
        if row.table in TASK_TABLES and not row.required and _accepted_beside(row.field, models):
            return []
        return [f"{where} is no field of {', '.join(infos)} in contract/catalog.py: remove the row or correct its name"]
    lacking = [name for name, info in infos.items() if info is None]
    if lacking:
        return [f"{where} is listed for {row.kinds}, but {', '.join(lacking)} has no such field: narrow `for`"]
    required = {name: info.is_required() for name, info in infos.items() if info is not None}
    if set(required.values()) != {row.required}:
        truth = ", ".join(f"{name}: {'yes' if value else 'no'}" for name, value in required.items())
        return [
            f"{where} says required {'yes' if row.required else 'no'}, contract/catalog.py says {truth}: "
            "correct the required column (or split the row by kind)"
        ]
    return []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_virtualenv_program_named_is_installed(page: Path) -> None:
    """`.venv/bin/<program>` in a page's code is what a reader types after `make install`: the program must be
    one `make install` puts there (checked against the virtualenv running the tests, which make built)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running inside the project's virtualenv")
    named = {match for line in read_page(page).code for match in re.findall(r"\.venv/bin/([\w.-]+)", line)}
    missing = sorted(name for name in named if not (Path(sys.prefix) / "bin" / name).exists())
    assert not missing, (
        f"{_rel(page)} names .venv/bin/{', .venv/bin/'.join(missing)}, which `make install` does not install; "
        "use `.venv/bin/python -m <module>`"
    )


def test_the_postman_counts_in_the_test_guide_are_the_collections() -> None:
    """docs/tests.md says how many requests and assertions the collection holds: counted from the file."""
    collection = json.loads((REPO / "postman" / "collection.json").read_text(encoding="utf-8"))

    def requests(items: list[dict[str, object]]) -> Iterator[dict[str, object]]:
        for item in items:
            inner = item.get("item")
            yield from requests(inner) if isinstance(inner, list) else (item,)

    found = list(requests(collection["item"]))
    scripts = [
        line
        for item in found
        for event in item.get("event", [])  # type: ignore[attr-defined]
        if event["listen"] == "test"
        for line in event["script"]["exec"]
    ]
    counts = f"({len(found)} requests, {sum(line.count('pm.test(') for line in scripts)} assertions)"
    prose = " ".join(read_page(REPO / "docs" / "tests.md").prose.split())
    assert counts in prose, f"docs/tests.md should say {counts}"


def test_every_error_code_the_gateway_writes_is_in_the_api_docs_table() -> None:
    """Each literal `APIError(status, "code", ...)` / `error_response(status, "code", ...)` in the gateway has
    its row, with that status, in docs/api.md's error table: a client author reads the codes there."""
    table = set(re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", (REPO / "docs" / "api.md").read_text(), re.M))
    written = set()
    for path in (REPO / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and len(node.args) >= 2):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            status, code = node.args[0], node.args[1]
            if (
                name in ("APIError", "error_response")
                and isinstance(status, ast.Constant)
                and isinstance(code, ast.Constant)
            ):
                written.add((str(status.value), str(code.value), path.relative_to(REPO).as_posix()))
    assert len(written) > 30  # the scan finds the gateway's errors
    assert [w for w in sorted(written) if w[:2] not in table] == []
