"""The documentation: the generated field reference is current, every field has an example the toolbox
accepts, and every relative link (file and #anchor) of README.md and docs/ resolves as GitHub resolves it."""
import glob
import os
import re
import unicodedata

import pytest
import yaml
from conftest import ROOT

from kube_helpers import LAUNCH, manifests
from toolbox.core import fields
from toolbox.devtools import fieldref

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# -- the field reference ----------------------------------------------------------------------------------
def test_the_field_reference_in_grid_md_is_current():
    committed = fieldref.current_block((ROOT / "docs" / "grid.md").read_text(encoding="utf-8"))
    assert committed is not None, "docs/grid.md lost the markers of the generated field reference"
    assert committed == fieldref.render(), "docs/grid.md's field reference is out of date: run `make docs`"


def test_replace_block_touches_only_the_generated_part():
    text = f"intro\n{fieldref.BEGIN}\nold table\n{fieldref.END}\noutro\n"
    assert fieldref.replace_block(text, "NEW") == "intro\nNEW\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        fieldref.replace_block("no markers here", "NEW")


def test_every_field_is_in_the_reference_once():
    block = fieldref.render()
    for field in fields.FIELDS:
        assert block.count(f"| `{field.name}` |") == 1, field.name
    assert set(fieldref.EXAMPLES) <= set(fields.FIELD_BY_NAME), "examples of fields that do not exist"


@pytest.mark.parametrize("field", fields.FIELDS, ids=lambda f: f.name)
def test_every_field_has_an_example_the_toolbox_accepts(project, field):
    example = fieldref.EXAMPLES.get(field.name)
    assert example, f"no example for {field.name}: add one to EXAMPLES in devtools/fieldref.py"
    value = yaml.safe_load(example)
    assert list(value) == [field.name], f"the example of {field.name} sets {list(value)}"
    import jsonschema

    base = {"project_name": "demo", "user": "alice", "namespace": "ns"}
    jsonschema.validate({**base, **value}, fields.kube_schema())
    for path in value.get("file") or []:  # shipped files must exist
        target = project.path / path
        if path.endswith("/"):
            (target / "x.yaml").parent.mkdir(parents=True, exist_ok=True)
            (target / "x.yaml").write_text("a: 1\n")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("print(1)\n")
    project.kube_yaml("".join(f"{k}: {v}\n" for k, v in base.items() if k not in value) + example + "\n")
    project.launch_yaml(LAUNCH)
    assert manifests()  # loaded, expanded, rendered and strictly valid


# -- the architecture map ---------------------------------------------------------------------------------
def package_modules():
    """Every module of the toolbox as 'core/fields.py' (package __init__ files and non-package folders aside)."""
    found = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "bench", "examples", "build", "docs") or rel.parts[0].startswith("."):
            continue
        if path.name != "__init__.py":
            found.add(rel.as_posix())
    return found


def mapped_modules(text):
    """The modules the architecture map of docs/development.md names, as 'core/fields.py'."""
    block = text.split("## Architecture", 1)[1].split("```", 2)[1]
    found, package = set(), ""
    for line in block.splitlines():
        head = re.match(r"^([a-z0-9_]+)/", line)
        if head:
            package = head.group(1) + "/"
        elif re.match(r"^[a-z0-9_]+\.py\b", line):
            package = ""  # top-level modules (errors.py, launch.py, ...)
        where, path_before = package, False
        for piece in re.split(r"(\b[a-z0-9_]+/)", line):
            if piece == package:
                where = package
            elif re.fullmatch(r"[a-z0-9_]+/", piece):
                path_before = not (ROOT / package / piece).is_dir()
                where = where if path_before else package + piece  # a sub-package (s3/backends/)
            else:
                if path_before:  # a path in a description (`core/fields.py`), not an entry of the map
                    piece = re.sub(r"^[a-z0-9_]+\.py", "", piece)
                path_before = False
                found.update(where + name for name in re.findall(r"\b([a-z0-9_]+\.py)\b", piece))
    return found


def test_mapped_modules_reads_the_map():
    text = ("## Architecture\n```\nerrors.py   one formatter\ncore/   a.py   b (see kube/c.py)\n"
            "        d.py, e.py\ns3/     backends/  f.py and g.py\n```\n")
    assert mapped_modules(text) == {"errors.py", "core/a.py", "core/d.py", "core/e.py", "s3/backends/f.py",
                                    "s3/backends/g.py"}


def test_the_architecture_map_names_every_module():
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    mapped, real = mapped_modules(text), package_modules()
    assert not real - mapped, f"docs/development.md's architecture map lacks {sorted(real - mapped)}"
    assert not mapped - real, f"docs/development.md's architecture map names modules that do not exist: " \
                              f"{sorted(mapped - real)}"


# -- the README's quick start ------------------------------------------------------------------------------
def test_the_readme_quick_start_is_the_example_project(project):
    """The two YAML blocks of the README's quick start give the grid of examples/quickstart (which the
    demo and the install test run): same cells, same names, same commands."""
    from toolbox.core.config import load_config
    from toolbox.core.grid import expand

    def cells(root):
        return [(c.name, c.command, c.local_command) for c in expand(load_config(str(root))).cells]

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    kube, launch = re.findall(r"```yaml\n(.*?)```", quick_start, re.S)
    project.kube_yaml(kube)
    project.launch_yaml(launch)
    assert cells(project.path) == cells(ROOT / "examples" / "quickstart")


# -- links ------------------------------------------------------------------------------------------------
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
EMPHASIS = re.compile(r"(\*\*|\*|(?<!\w)__|(?<!\w)_)(\S(?:.*?\S)?)\1(?!\w)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)


def prose(text):
    """Markdown without fenced blocks and code spans: what can hold links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def github_slug(heading):
    """The anchor GitHub gives a heading: its text (formatting removed) in lower case, every character that
    is not a letter, digit, mark, space, - or _ dropped, spaces turned into -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)
    pieces = re.split(r"(`+[^`]*`+)", text)  # emphasis marks count outside code spans only
    text = "".join(p.strip("`") if p.startswith("`") else EMPHASIS.sub(r"\2", p) for p in pieces)
    kept = [c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LNM"]
    return "".join(kept).replace(" ", "-")


def anchors(path):
    """Every anchor of a Markdown file: its headings' slugs (repeats get -1, -2, ...) and HTML anchors."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found, seen = set(HTML_ANCHOR.findall(text)), {}
    for _, heading in HEADING.findall(text):
        slug = github_slug(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def local_links(path):
    text = prose(path.read_text(encoding="utf-8"))
    targets = LINK.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, mailto: ...


@pytest.mark.parametrize("heading, slug", [
    ("Fields (config/kube.yaml and overrides)", "fields-configkubeyaml-and-overrides"),
    ("The grid (config/launch.yaml)", "the-grid-configlaunchyaml"),
    ("Default of `s3_endpoint_map`", "default-of-s3_endpoint_map"),
    ("`make job` -- the **resubmission** table", "make-job----the-resubmission-table"),
    ("Über [links](x.md) & more", "über-links--more"),
    ("a _b_ and snake_case_name", "a-b-and-snake_case_name"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in local_links(doc):
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no file {os.path.relpath(path, ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {os.path.relpath(path, ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


# Paths of this repository quoted as code (`tests/unit/golden/*.yaml`, `bench/plan.py`) must exist too.
REPO_PATH = re.compile(r"`((?:tests|bench|docs|templates|examples|schemas|workflows)/[^`\s]*)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_repository_paths_exist(doc):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for quoted in REPO_PATH.findall(text):
        path = quoted.split("::")[0]
        if "<" in path:  # a pattern with placeholders (templates/<name>)
            continue
        if not glob.glob(str(ROOT / path)):
            missing.append(quoted)
    assert not missing, f"{doc.relative_to(ROOT)} quotes paths that do not exist: {missing}"


# Functions and classes quoted as code (`core/grid.expand`, `cli/local.py:cmd_local`) must exist too.
CODE_REFERENCE = re.compile(r"`((?:core|local|kube|s3|devtools|cli|report)(?:/[a-z0-9_]+)+)"
                            r"(?:\.py)?(?:[.:]([A-Za-z_]\w*))?`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_functions_and_modules_exist(doc):
    import importlib

    missing = []
    for module_path, attribute in CODE_REFERENCE.findall(doc.read_text(encoding="utf-8")):
        if (ROOT / module_path).is_dir():
            continue
        try:
            module = importlib.import_module("toolbox." + module_path.replace("/", "."))
        except ModuleNotFoundError:
            missing.append(module_path)
            continue
        if attribute and not hasattr(module, attribute):
            missing.append(f"{module_path}.{attribute}")
    assert not missing, f"{doc.relative_to(ROOT)} quotes code that does not exist: {missing}"


def test_the_link_checker_sees_broken_links(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n## Part `two`\n[ok](#part-two) [bad](#nope) [file](b.md#title)\n"
                                   "`[not](a link)`\n```\n[no](link.md)\n```\n[ref]: missing.md\n")
    (tmp_path / "b.md").write_text("# Title\n")
    assert sorted(local_links(tmp_path / "a.md")) == ["#nope", "#part-two", "b.md#title", "missing.md"]
    assert anchors(tmp_path / "a.md") == {"title", "part-two"}
