"""Rendering Kubernetes manifests from templates/, with everything checked before any API call.

describe -> validate -> execute: `Renderer` turns cells (or the interactive pod's settings) into
manifest text with the Jinja templates (a project overrides any of them by putting a file of the same
name in config/templates/), collecting every problem first. What a cell's settings imply (resources,
affinity, volumes, the start-up script, the pod_config patch...) is a `Shape`, computed once per distinct
settings.

One render path for the Jobs of cells: the Job template is rendered once per shape with placeholders for
the cell's values (name, command, model, dataset, hparams), and every cell's manifest is that text with
its own values substituted (escaped as |q escapes them); its object (for the API) is the same substitution
into the parsed placeholder manifest. So 10,000 cells render in well under a second. The templates must
therefore use a cell's values as given, through |q or |json: the first cell of each shape is also
rendered with its real values, and a template that changes them is refused (a configuration error).
The client side (applying, listing, deleting) is in client.py and submit.py; the commands in cli/.
"""
import hashlib
import json
import os
import re
import shlex

from toolbox import TOOLBOX_DIR
from toolbox.core import podschema
from toolbox.errors import ConfigError, Problem
from toolbox.kube import jobspec, objects, packing, podspec
from toolbox.kube.yamltext import block, flow, json_escape, q, yaml_escape

TEMPLATE_DIR = os.path.join(TOOLBOX_DIR, "templates")
OVERRIDE_DIR = os.path.join("config", "templates")
MAIN = podspec.MAIN
MAX_SCRIPT = 120 * 1024  # Linux: one execve argument is at most 128 KiB
SLEEP_INFINITY = re.compile(r"\bsleep\s+inf(inity)?\b")
_ENVIRONMENTS = {}


def _bytecode_cache(jinja2):
    """Compiled templates cached across commands (compiling them costs ~80 ms per command); keyed by
    the template's source, so edited templates are recompiled. None when no cache folder is writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "kube-toolbox", "jinja")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(folder) if os.access(folder, os.W_OK) else None


def template_env(root="."):
    """The Jinja environment: config/templates/ of the project first, then the toolbox's templates/."""
    key = os.path.abspath(root)
    if key not in _ENVIRONMENTS:
        import jinja2

        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(os.path.join(key, OVERRIDE_DIR)),
                                      jinja2.FileSystemLoader(TEMPLATE_DIR)])
        env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                 lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                                 bytecode_cache=_bytecode_cache(jinja2))
        env.filters.update(q=q, json=flow, yaml=block, shq=shlex.quote)
        _ENVIRONMENTS[key] = env
    return _ENVIRONMENTS[key]


def template_error(err, name):
    """A Jinja error as a configuration problem pointing at the template file and line (exit 2). Syntax
    errors carry them; errors while rendering (an undefined variable) are found in the traceback, whose
    frames of compiled templates point at the template file."""
    where, line = getattr(err, "filename", None), getattr(err, "lineno", None)
    if not where:
        tb = err.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.endswith(".j2"):     # Jinja rewrites these frames to template lines
                where, line = filename, tb.tb_lineno
            tb = tb.tb_next
    where = os.path.relpath(where) if where and os.path.isabs(where) else (where or name)
    return ConfigError([Problem(where, line, None, "", f"template error: {err}",
                                ["templates in config/templates/ override the toolbox's "
                                 "(src/toolbox/templates/); compare yours with them"])])


class Shape:
    """What a cell's settings imply for its pod (computed once per distinct settings)."""

    def __init__(self, settings, kind):
        self.settings = settings
        self.kind = kind
        self.problems = []       # (field, message)
        self.warnings = []
        self.context = None      # template variables shared by every cell of this shape
        self.labels = {}
        self.fileset = None
        self.patch = None        # pod_config merged into every manifest of this shape
        self.text = None         # the Job manifest with placeholder cell values (_TOKENS)
        self.json_text = None    # the same, parsed, as JSON text


class Renderer:
    """Renders cells / the interactive pod of one project. Collects problems instead of raising, so
    every problem of every cell is reported at once (`check()`)."""

    def __init__(self, root=".", env_values=None, sweep=None):
        self.root = root
        self.env = template_env(root)
        self.env_values = env_values or {}
        self.sweep = sweep
        self._templates = {}
        self._shapes_by_id = {}
        self._shapes = {}
        self._filesets = {}
        self._problems = {}      # (where-field, message) -> [first place, count]
        self.warnings = []
        self.samples = []        # the first manifest of each shape (dry runs parse these)
        self.secret = None
        self._secret_done = False
        for problem in objects.env_problems(self.env_values):
            self._problems[(problem.path, problem.what)] = [problem, 1]

    def template(self, name):
        if name not in self._templates:
            import jinja2

            try:
                self._templates[name] = self.env.get_template(name)
            except jinja2.TemplateError as err:
                raise template_error(err, name) from None
        return self._templates[name]

    # -- problems ---------------------------------------------------------------------------------------
    def problem(self, where, field, message, details=()):
        key = (field, message)
        if key in self._problems:
            self._problems[key][1] += 1
        else:
            self._problems[key] = [Problem(where, None, None, field, message, details), 1]

    def check(self, locate=None):
        """Raise ConfigError with every problem found so far (nothing has been sent). `locate` points a
        problem at the config line that set its field (Config.locate)."""
        if not self._problems:
            return
        problems = []
        for problem, count in self._problems.values():
            if locate:
                problem = locate(problem)
            if count > 1:
                problem.details.append(f"(and {count - 1} more cell{'s' if count > 2 else ''})")
            problems.append(problem)
        raise ConfigError(problems)

    # -- shapes -----------------------------------------------------------------------------------------
    def shape(self, settings, kind, where):
        """The Shape of some settings (built once per distinct settings); its problems are counted for
        `where` (a cell) every time."""
        found = self._shapes_by_id.get((id(settings), kind))
        if found is not None:
            shape = found[1]
        else:
            key = (kind, json.dumps(dict(settings), sort_keys=True, default=str))
            shape = self._shapes.get(key)
            if shape is None:
                shape = self._build_shape(settings, kind, where)
                self._shapes[key] = shape
            self._shapes_by_id[(id(settings), kind)] = (settings, shape)  # keeps settings alive: ids stay unique
        for field, message, *details in shape.problems:
            self.problem(where, field, message, *details)
        return shape

    def _secret_for(self, settings):
        if not self._secret_done:
            self._secret_done = True
            self.secret = objects.env_secret(self.env_values, settings) if self.env_values else None
        return self.secret

    def _build_shape(self, s, kind, where):
        shape = Shape(s, kind)
        problems = shape.problems
        found, tolerations = podspec.check_settings(s)
        problems.extend(found)
        if not s.get("user") or not s.get("namespace"):
            return shape
        fileset = self._fileset(s, where, problems)
        shape.fileset = fileset
        volumes, main_mounts, sidecars = podspec.volumes(s, fileset, problems)
        problems.extend(podspec.pod_config_problems(s, sidecars, volumes))
        if problems:
            return shape
        gpu_resource = podspec.gpu_resource(s)
        main_res = podspec.Resources(s["gpu_count"], s["cpu_count"], s["memory"], s["ephemeral_storage"],
                                      s["limit_ratio"])
        if kind == "pod":
            podspec.apply_caps(s, [main_res] + [c["res"] for c in sidecars], shape.warnings)
        main = {"name": podspec.MAIN, "command": None, "mounts": main_mounts, "ports": [], "extra_env": [],
                "field_env": []}
        main["requests"], main["limits"] = main_res.as_dicts(gpu_resource)
        for car in sidecars:
            car["requests"], car["limits"] = car.pop("res").as_dicts(gpu_resource)
        secret = self._secret_for(s)
        endpoint_map = s.get("s3_endpoint_map") or {}
        env = [(k, objects.map_endpoint(v, endpoint_map)) for k, v in (s.get("env") or {}).items()]
        role = "job" if kind == "job" else "interactive"
        shape.labels = {**(s.get("labels") or {}), **objects.owner_labels(s, role)}
        startup = self.startup_script(s, fileset)
        if len(startup.encode("utf-8")) > MAX_SCRIPT:
            problems.append(("startup_script", f"the start-up script takes {len(startup) // 1024} KiB; a container "
                                               f"command argument holds at most {MAX_SCRIPT // 1024} KiB"))
            return shape
        shape.context = {
            "s": s, "kind": kind, "namespace": s["namespace"], "image": s["image"],
            "pull_secret": s.get("image_pull_secrets") or None,
            "startup": startup,
            "env": env, "env_secret": secret["metadata"]["name"] if secret else None,
            "main": main, "sidecars": sidecars, "volumes": volumes,
            "affinity": podspec.affinity(s), "node_selector": s.get("node_selector") or {},
            "tolerations": tolerations, "subdomain": None, "job": jobspec.spec(s),
        }
        shape.patch = podspec.pod_patch(s)
        return shape

    def _fileset(self, s, where, problems):
        paths = tuple(s.get("file") or ())
        if not paths:
            return None
        if paths not in self._filesets:
            fileset, found = objects.collect_files(paths, s, self.root, where="file")
            self._filesets[paths] = (fileset, found)
        fileset, found = self._filesets[paths]
        problems.extend((p.path, f"{p.what}" + (f" ({'; '.join(p.details)})" if p.details else "")) for p in found)
        return fileset

    # -- the start-up script ----------------------------------------------------------------------------
    def startup_script(self, s, fileset, members=0, array_dir=None):
        import jinja2

        context = {
            "startup_script": s.get("startup_script"), "extra_startup_script": s.get("extra_startup_script"),
            "git_pull": bool(s.get("git_pull")), "deploy_key_dir": podspec.DEPLOY_KEY_DIR,
            "conda_home": s["conda_home"], "conda_env": s.get("conda_env_name") or s["project_name"],
            "conda_sh": os.path.join(s["conda_home"], "etc/profile.d/conda.sh"),
            "files": fileset.files if fileset else [], "files_dir": objects.FILES_MOUNT,
            "index_key": objects.INDEX_KEY,
            "members": members, "array_dir": array_dir,
        }
        try:
            return self.template("startup.sh.j2").render(context)
        except jinja2.TemplateError as err:
            raise template_error(err, "startup.sh.j2") from None

    # -- manifests --------------------------------------------------------------------------------------
    def render(self, template_name, shape, name, command, labels, annotations, extra_env=(), cell_name=None,
               main=None, **context_values):
        """A manifest: the template rendered with the shape's context and these values (`main`: more of the
        main container, e.g. field_env; `context_values`: e.g. job, subdomain, volumes), then the shape's
        pod_config merged into its pod."""
        import jinja2

        context = dict(shape.context, **context_values)
        main = dict(context["main"], command=command, extra_env=list(extra_env), **(main or {}))
        context.update(name=name, cell_name=cell_name or name, labels=labels, annotations=annotations, main=main,
                       job_labels=jobspec.job_labels(shape.settings, labels))
        try:
            text = self.template(template_name).render(context)
        except jinja2.TemplateError as err:
            raise template_error(err, template_name) from None
        return self._patched(shape, text, name)

    def _patched(self, shape, text, name):
        """pod_config merged into the pod of a rendered manifest (re-written as block YAML)."""
        if not shape.patch:
            return text
        manifest = parse_manifest(text, name)
        spec = manifest.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") if manifest["kind"] != "Pod" else spec
        if not isinstance(pod, dict):
            raise ConfigError([Problem(name, None, None, "pod_config", "the rendered manifest has no pod spec "
                                       "to merge pod_config into", ["check your templates in config/templates/"])])
        podschema.merge(pod, shape.patch)
        return block(manifest) + "\n"

    def cell_manifest(self, cell):
        """The Job manifest text of one cell (None when its settings have problems): the shape's
        placeholder manifest with the cell's values substituted."""
        shape = self.shape(cell.settings, "job", cell.name)
        self.check_command(cell)
        if shape.context is None:
            return None
        values = _cell_values(cell)
        if shape.text is None:
            self._placeholder_manifest(shape, values)
        return _substitute(shape.text, values)

    def _placeholder_manifest(self, shape, first):
        """Render the shape's Job once with placeholder cell values, and check it against a render with
        the real values of its first cell: a template that changes a cell's value would give other cells
        wrong manifests."""
        real = self._render_cell(shape, first)
        text = self._render_cell(shape, _TOKENS)
        if _substitute(text, first) != real:
            template = self.template("job.yaml.j2").filename
            where = os.path.relpath(template) if os.path.isabs(template) else template
            raise ConfigError([Problem(where, None, None, "", "template error: the cell's values (name, "
                                       "cell_name, main.command, labels, annotations) must be used as given",
                                       ["write them through |q or |json, unchanged (e.g. {{ main.command|q }}); "
                                        "a filter that changes them (|upper, |replace, |truncate) or a value "
                                        "without |q would give other cells wrong manifests",
                                        "templates in config/templates/ override the toolbox's "
                                        "(src/toolbox/templates/); compare yours with them"])])
        self.samples.append(real)
        shape.text = text
        if jobspec.indexed(shape.settings):
            jobspec.check_template(self, real, first["name"])

    def cell_object(self, cell):
        """The Job of one cell as a dict (after cell_manifest): the placeholder manifest is parsed once per
        shape and each cell substitutes its values into its JSON (parsing YAML costs ~0.7 ms a manifest)."""
        shape = self.shape(cell.settings, "job", cell.name)
        if shape.json_text is None:
            shape.json_text = json.dumps(parse_manifest(shape.text, f"job/{cell.name}"), ensure_ascii=False)
        return json.loads(_substitute(shape.json_text, _cell_values(cell), json_escape))

    def workload_labels(self, shape, name):
        """The labels of a Job and its pods: the shape's, the cell (or pack) and the sweep."""
        labels = dict(shape.labels)
        labels["toolbox/cell"] = name
        if self.sweep:
            labels["toolbox/sweep"] = self.sweep
        return labels

    def _render_cell(self, shape, values):
        annotations = {"toolbox/model": values["model"], "toolbox/dataset": values["dataset"],
                       "toolbox/hparams": values["hparams"]}
        return self.render("job.yaml.j2", shape, values["job"], values["command"],
                           self.workload_labels(shape, values["name"]), annotations, cell_name=values["name"])

    def check_command(self, cell):
        if SLEEP_INFINITY.search(cell.command):
            self.problem(cell.name, "command", "a Job must end: 'sleep infinity' never does",
                         ["use `make pod` for an interactive pod (server_command)"])

    def pack_manifest(self, name, members):
        """The Job of a shared-GPU pack (packing.py): its members run side by side in one container,
        their commands and names in TOOLBOX_MEMBER_<i> / TOOLBOX_MEMBER_<i>_NAME."""
        import copy

        for cell in members:
            self.check_command(cell)
        settings = packing.merged_settings(members)
        shape = self.shape(settings, "job", members[0].name)
        if shape.context is None:
            return None
        packed = copy.copy(shape)
        packed.context = dict(shape.context, startup=self.startup_script(settings, shape.fileset, len(members)))
        labels = self.workload_labels(shape, name)
        annotations = {packing.MEMBERS_ANNOTATION: json.dumps([c.name for c in members]),
                       "toolbox/hparams": json.dumps({c.name: dict(c.hparams) for c in members}, ensure_ascii=False)}
        extra_env = []
        for i, cell in enumerate(members):
            extra_env += [(f"TOOLBOX_MEMBER_{i}_NAME", cell.name), (f"TOOLBOX_MEMBER_{i}", cell.command)]
        command = f"# shared GPU: {len(members)} cells run side by side (TOOLBOX_MEMBER_*)"
        return self.render("job.yaml.j2", packed, name, command, labels, annotations, extra_env)

    def pod_manifest(self, settings, name):
        """The interactive pod's manifest text (problems are collected; call check())."""
        shape = self.shape(settings, "pod", name)
        self.warnings.extend(w for w in shape.warnings if w not in self.warnings)
        if shape.context is None:
            return None
        labels = dict(shape.labels)
        return self.render("pod.yaml.j2", shape, name, settings["server_command"], labels, {})

    def referenced_secrets(self):
        """Secrets the rendered pods use but the toolbox does not create: name -> what for."""
        found = {}
        for shape in self._shapes.values():
            if shape.context is None:
                continue
            s = shape.settings
            if shape.context["pull_secret"]:
                found[shape.context["pull_secret"]] = "image_pull_secrets: pods cannot pull a private image"
            if s.get("git_pull") and s.get("deploy_key_secret") and s.get("startup_script") is None:
                found.setdefault(s["deploy_key_secret"], "deploy_key_secret: `git pull` in pods cannot "
                                 "authenticate (make deploy_key); they run the image's code")
        return found

    def configmaps(self):
        """The ConfigMaps of every file set used by a rendered shape (deduplicated by name)."""
        seen = {}
        for shape in self._shapes.values():
            if shape.fileset is not None:
                seen.setdefault(shape.fileset.name, shape.fileset.configmap)
        return list(seen.values())


# Placeholders of a cell's values: the quote in each makes a value written without |q (or changed) show
# up in the check against the first cell's real render.
_TOKENS = {key: f'tbx"{key}"q7z' for key in ("name", "job", "command", "model", "dataset", "hparams")}


def _cell_values(cell):
    return {"name": cell.name, "job": jobspec.job_name(cell.name, cell.settings), "command": cell.command,
            "model": cell.model, "dataset": cell.dataset,
            "hparams": json.dumps(dict(cell.hparams), ensure_ascii=False)}


_ESCAPED_TOKENS = {}  # escape -> [(key, its placeholder as escape writes it)]


def _substitute(text, values, escape=yaml_escape):
    """The placeholders (as escape writes them: inside quoted strings) replaced by the escaped values."""
    tokens = _ESCAPED_TOKENS.get(escape)
    if tokens is None:
        tokens = _ESCAPED_TOKENS[escape] = [(key, escape(token)) for key, token in _TOKENS.items()]
    for key, token in tokens:
        text = text.replace(token, escape(values[key]))
    return text


def sweep_id(cells):
    """Label value identifying a sweep: a hash of the names of its cells."""
    digest = hashlib.blake2b(digest_size=5)
    for name in sorted(c.name for c in cells):
        digest.update(name.encode() + b"\n")
    return digest.hexdigest()


def parse_manifest(text, where):
    """Manifest text -> dict with PyYAML's C loader; a template that produced bad YAML is an error."""
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ConfigError([Problem(where, None, None, "", f"the rendered manifest is not valid YAML: {err}",
                                   ["check your templates in config/templates/"])]) from None
    if not isinstance(data, dict) or "kind" not in data or "metadata" not in data:
        raise ConfigError([Problem(where, None, None, "", "the rendered manifest is not a Kubernetes object "
                                   "(kind, metadata)", ["check your templates in config/templates/"])])
    return data
