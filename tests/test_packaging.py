"""Packaging: the wheel carries every module and the frontend, an installed
wheel is found by TensorBoard, the declared dependency ranges are the ones CI
tests, and no code reaches into another library's private attributes."""

import ast
import glob
import importlib
import importlib.metadata
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where each source folder lands in the wheel (setup.py's package_dir).
SOURCE_ROOTS = {"adapter": "torch_visualization", "tb_plugin": "torch_visualization/tb_plugin"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy of the sources: building in the repository
    # leaves build/ behind, whose stale modules would ship in later wheels.
    # ".venv*" also skips the oldest-TensorBoard venv (`make test-tb-oldest`).
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
            ".pytest_cache", ".hypothesis", "node_modules", "runs",
        ),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = glob.glob(str(out / "torch_visualization-*.whl"))
    return path


def source_modules():
    """Every Python module of the package, as `(path in repo, path in wheel)`."""
    modules = []
    for folder, target in SOURCE_ROOTS.items():
        for path in sorted(glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True)):
            relative = os.path.relpath(path, os.path.join(REPO, folder))
            modules.append((os.path.relpath(path, REPO), target + "/" + relative.replace(os.sep, "/")))
    return modules


def test_wheel_contains_every_module_the_frontend_and_the_entry_point(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    frontend = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "frontend", "**", "*.js"), recursive=True))
    assert frontend, "no frontend files in the repository"
    missing = ["torch_visualization/" + path for path in frontend if "torch_visualization/" + path not in names]
    modules = source_modules()
    assert any(wheel_path == "torch_visualization/tb_plugin/plugin.py" for _, wheel_path in modules)
    # A package folder missing from setup.py's `packages` would ship without
    # its modules and fail at import time on users' machines only.
    missing += [wheel_path for _, wheel_path in modules if wheel_path not in names]
    assert not missing, "not in the wheel (add the package to setup.py): %s" % missing
    assert "torch_visualization/plugin_data.proto" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[tensorboard_plugins]" in text
    assert "torch_visualization.tb_plugin.loader:TorchVisualizationLoader" in text


def test_installed_wheel_is_discovered_by_tensorboard(wheel, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), wheel],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Run with site disabled (-S): the venv's site-packages is added by hand,
    # without processing .pth files, so the repository's editable install is
    # invisible and only the installed wheel can provide the plugin.
    from torch_visualization import SummaryWriter

    logdir = tmp_path / "logs"
    with SummaryWriter(str(logdir / "run")) as writer:
        writer.add_class_pie("p", [1, 2], 0)
    venv_site = sysconfig.get_paths()["purelib"]
    script = textwrap.dedent(
        """
        import sys, json
        sys.path[:0] = [%r, %r]
        import torch_visualization
        from tensorboard import default, program
        from tensorboard.backend import application
        from tensorboard.backend.event_processing import data_ingester
        from werkzeug.test import Client
        tb = program.TensorBoard(plugins=default.get_plugins())
        tb.configure(argv=["tensorboard", "--logdir", %r, "--load_fast=false",
                           "--reload_task=blocking", "--reload_interval=0"])
        ingester = data_ingester.LocalDataIngester(tb.flags)
        ingester.start()
        app = application.TensorBoardWSGIApp(tb.flags, tb.plugin_loaders, ingester.data_provider,
                                             tb.assets_zip_provider, ingester.deprecated_multiplexer)
        client = Client(app)
        listing = json.loads(client.get("/data/plugins_listing").get_data())
        index = client.get("/data/plugin/torch_visualization/index.js")
        print(json.dumps({"module": torch_visualization.__file__,
                          "entry": listing.get("torch_visualization"),
                          "index_status": index.status_code}))
        """
    ) % (str(target), venv_site, str(logdir))
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith(str(target))
    assert report["entry"]["enabled"] is True
    assert report["entry"]["tab_name"] == "Model Insight"
    assert report["index_status"] == 200


# -- declared ranges vs. what CI tests ------------------------------------------


def install_requires():
    """setup.py's `install_requires`, read without running setup.py."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for keyword in node.keywords:
                if keyword.arg == "install_requires":
                    return {Requirement(r).name: Requirement(r) for r in ast.literal_eval(keyword.value)}
    raise AssertionError("setup.py has no setup(install_requires=[...])")


def makefile_variables():
    """The Makefile's simply expanded variables (`NAME := value`)."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        text = re.sub(r"\\\n\s*", " ", f.read())  # join continued lines
    return dict(re.findall(r"^([A-Z_]+)\s*:=\s*(.*?)\s*$", text, re.M))


def makefile_rule(target):
    """The prerequisites and recipe of one Makefile rule, as one string."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"^%s\s*:(?!=)(.*(?:\n\t.*)*)" % re.escape(target), text, re.M)
    assert match, "Makefile has no rule for %r" % target
    # Without the recipe's comment lines: they are not run.
    return "\n".join(line for line in match.group(1).split("\n") if not line.strip().startswith("#"))


def lower_bound(requirement):
    minimums = [s.version for s in requirement.specifier if s.operator == ">="]
    assert len(minimums) == 1, "%s: expected one >= bound" % requirement
    return minimums[0]


def test_declared_ranges_are_the_ones_make_test_covers():
    """setup.py's lower bounds are exactly what `make test-tb-oldest` installs,
    and `make test` runs that target: the range cannot drift from CI."""
    requires = install_requires()
    variables = makefile_variables()
    tensorboard = requires["tensorboard"]
    assert {(s.operator, s.version) for s in tensorboard.specifier} == {(">=", variables["TB_OLDEST"]), ("<", "3")}
    assert lower_bound(requires["protobuf"]) == variables["PROTOBUF_OLDEST"]
    assert lower_bound(requires["numpy"]) == variables["NUMPY_OLDEST"]
    venv_rule = makefile_rule("$(OLDEST_VENV)/.installed")
    for pin in (
        '"tensorboard==$(TB_OLDEST)"',
        '"tensorboard-data-server==$(TBDS_OLDEST)"',
        '"protobuf==$(PROTOBUF_OLDEST)"',
        '"numpy==$(NUMPY_OLDEST)"',
        '"$(TORCH_SPEC)"',
    ):
        assert pin in venv_rule, "the oldest venv does not install %s" % pin
    # Installed with our own requirements (`-e .`, not --no-deps): pip refuses
    # the pins above if install_requires excludes any of them.
    assert re.search(r"pip install [^\n]*-e \.(?!\S)", venv_rule) and "--no-deps" not in venv_rule
    assert "test-tb-oldest" in makefile_rule("test")
    assert "$(TB_OLDEST_TESTS)" in makefile_rule("test-tb-oldest")
    for path in variables["TB_OLDEST_TESTS"].split():
        assert os.path.isfile(os.path.join(REPO, path)), "TB_OLDEST_TESTS names a missing file: %s" % path


def test_installed_tensorboard_is_in_the_declared_range():
    """Each venv runs inside the range; the oldest venv is exactly the Makefile's pins."""
    requires = install_requires()
    installed = importlib.metadata.version("tensorboard")
    assert requires["tensorboard"].specifier.contains(installed), installed
    assert requires["numpy"].specifier.contains(importlib.metadata.version("numpy"))
    assert requires["protobuf"].specifier.contains(importlib.metadata.version("protobuf"))
    variables = makefile_variables()
    if Version(installed) == Version(variables["TB_OLDEST"]):
        assert importlib.metadata.version("protobuf") == variables["PROTOBUF_OLDEST"]
        assert importlib.metadata.version("numpy") == variables["NUMPY_OLDEST"]
        assert importlib.metadata.version("tensorboard-data-server") == variables["TBDS_OLDEST"]
    # RustBoard is a separate package (tensorboard-data-server): the one
    # installed must be one this TensorBoard declares it works with.
    (data_server,) = [
        Requirement(r) for r in importlib.metadata.requires("tensorboard")
        if Requirement(r).name == "tensorboard-data-server"
    ]
    assert data_server.specifier.contains(importlib.metadata.version("tensorboard-data-server"))


# -- no private attributes of other libraries -----------------------------------

# Underscore names that are documented public API.
PUBLIC_UNDERSCORE = {"_exit", "_getframe", "_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def allowed(origin, name):
    """`torch._foreach_*` is the one private family DESIGN.md allows."""
    return origin.split(".")[0] == "torch" and name.startswith("_foreach_")


def package_sources():
    """`{repo path: parsed module}` of adapter/ and tb_plugin/, without protoc
    output (`*_pb2.py` follows protobuf's own gencode contract)."""
    trees = {}
    for path, _ in source_modules():
        if path.endswith("_pb2.py"):
            continue
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            trees[path] = ast.parse(f.read(), path)
    return trees


def names_we_define(trees):
    """Every name our own code binds: functions, classes, variables,
    parameters, import aliases, and the attributes our classes set on
    `self`/`cls`. An assignment to another object's attribute
    (`their._x = ...`) defines nothing: that is how one patches someone
    else's private. (A subclass of another library's class setting one of
    the base's own names is caught separately, in `private_accesses`.)"""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif (
                isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del))
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return names


def foreign_class_nodes(tree):
    """Class definitions that subclass an imported (another library's) class."""
    bindings = foreign_bindings(tree)
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(attribute_origin(b, bindings) for b in node.bases)
    ]


def foreign_bindings(tree):
    """`{local name: dotted origin}` for everything a module imports from
    other packages, e.g. `{"_torch_tensorboard": "torch.utils.tensorboard"}`."""
    bindings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch_visualization":
                    continue
                if alias.asname:
                    bindings[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    bindings[root] = root
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] != "torch_visualization":
            for alias in node.names:
                bindings[alias.asname or alias.name] = node.module + "." + alias.name
    return bindings


def private_imports(tree):
    """Imports of private modules or names of other packages."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            paths = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            paths = [node.module + "." + alias.name for alias in node.names]
        else:
            continue
        for path in paths:
            parts = path.split(".")
            if parts[0] == "torch_visualization":
                continue
            bad = [p for p in parts if is_private(p) and not allowed(path, p) and p not in PUBLIC_UNDERSCORE]
            if bad:
                found.append((node.lineno, "import of %s" % path))
    return found


def attribute_origin(node, bindings):
    """The dotted origin of `node` when its root is an imported name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in bindings:
        return ".".join([bindings[node.id]] + parts[::-1])
    return None


def resolve(origin):
    """Imports a dotted origin such as `torch.utils.tensorboard.SummaryWriter`."""
    parts = origin.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(origin)


def names_of_class(cls):
    """Every name a class and its bases define or set on `self` (read from
    their source): what a subclass of ours must not touch when private."""
    names = set()
    for klass in getattr(cls, "__mro__", (cls,)):
        if klass is object:
            continue
        names.update(vars(klass))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue  # a class without Python source (a C extension)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


def foreign_bases(tree, bindings):
    """`{class node: (base names, what they are)}` for classes that subclass
    another library's class (their `self._x` may be the base's private)."""
    classes = {}
    for node in foreign_class_nodes(tree):
        names, what = set(), []
        for base in node.bases:
            origin = attribute_origin(base, bindings)
            if origin:
                try:
                    names |= names_of_class(resolve(origin))
                    what.append(origin)
                except (ImportError, AttributeError):
                    pass  # an optional integration (lightning, transformers) not installed
        if what:
            classes[node] = (names, ", ".join(what))
    return classes


def private_accesses(tree, ours):
    """`(line, what)` for each private attribute of another library's object.

    An access `x._name` (or `getattr(x, "_name")`) counts when `x` is an
    imported name or an attribute path from one (`torch.autograd.Variable.
    _execution_engine`), when `_name` is defined nowhere in our own code (so it
    can only be someone else's: `writer._async_writer`), or when a class that
    subclasses another library's class touches one of the base's own private
    names (`super()._get_file_writer()`, overriding `_get_file_writer`).
    """
    bindings = foreign_bindings(tree)
    found = []

    def check(node, value, name):
        if not is_private(name) or name in PUBLIC_UNDERSCORE:
            return
        origin = attribute_origin(value, bindings)
        if origin is not None:
            if not allowed(origin, name):
                found.append((node.lineno, "%s.%s" % (origin, name)))
        elif name not in ours:
            found.append((node.lineno, "._%s (defined by no code of ours)" % name[1:]))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            check(node, node.value, node.attr)
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            check(node, node.args[0], node.args[1].value)
    for cls, (base_names, bases) in foreign_bases(tree, bindings).items():
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in cls.body:
                name = node.name
            elif isinstance(node, ast.Attribute) and (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                or isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "super"
            ):
                name = node.attr
            else:
                continue
            if is_private(name) and name not in PUBLIC_UNDERSCORE and name in base_names:
                found.append((node.lineno, "%s.%s (private to %s)" % (cls.name, name, bases)))
    return found


def test_no_private_attributes_of_tensorboard_torch_or_other_libraries():
    """DESIGN.md: never reach into another library's private attributes (the
    next release breaks them, and a pin to avoid that breaks users); from
    torch only the `torch._foreach_*` family."""
    trees = package_sources()
    assert "tb_plugin/plugin.py" in trees and "adapter/writer.py" in trees
    ours = names_we_define(trees)
    violations = []
    for path, tree in sorted(trees.items()):
        for line, what in sorted(set(private_imports(tree) + private_accesses(tree, ours))):
            violations.append("%s:%d: %s" % (path, line, what))
    assert not violations, "private attributes of other libraries:\n" + "\n".join(violations)


def test_private_access_check_sees_what_it_must():
    """The checker itself: each way of reaching into a private is found, and
    our own private helpers are not."""
    source = textwrap.dedent(
        """
        import torch
        from tensorboard.summary.writer import record_writer
        from tensorboard.summary.writer import event_file_writer as efw
        from tensorboard.summary._private import thing
        from torch.utils import tensorboard as _tb

        def _helper(x):
            return x._mine, torch._foreach_norm(x), getattr(torch, "_foreach_mul", None)

        class Ours:
            def __init__(self):
                self._mine = 1

        class Guarded(record_writer.RecordWriter):
            def write(self, data):
                self._writer.write(data)

        class Writer(_tb.SummaryWriter):
            def _get_file_writer(self):
                return super()._get_file_writer()

        def bad(writer, model):
            torch.autograd.Variable._execution_engine.queue_callback(None)
            record_writer.RecordWriter._internal
            efw._AsyncWriter
            writer._async_writer._writer
            return getattr(model, "_orig_mod", None)
        """
    )
    tree = ast.parse(source)
    found = [what for _, what in private_imports(tree) + private_accesses(tree, names_we_define({"t": tree}))]
    text = "\n".join(found)
    for expected in (
        "import of tensorboard.summary._private.thing",
        "torch.autograd.Variable._execution_engine",
        "tensorboard.summary.writer.record_writer.RecordWriter._internal",
        "tensorboard.summary.writer.event_file_writer._AsyncWriter",
        "._async_writer (defined by no code of ours)",
        "._writer (defined by no code of ours)",
        "._orig_mod (defined by no code of ours)",
        "Writer._get_file_writer (private to torch.utils.tensorboard.SummaryWriter)",
        "Guarded._writer (private to tensorboard.summary.writer.record_writer.RecordWriter)",
    ):
        assert expected in text, "%r not found in:\n%s" % (expected, text)
    assert "_mine" not in text and "_foreach" not in text and "_helper" not in text
