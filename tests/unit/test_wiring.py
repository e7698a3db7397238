"""The composition root (gitserve/app.py) is the only place that wires the server.

- importing any module of gitserve, buildqueue or deploy, in a fresh interpreter, defines
  things and does nothing else: no push hook or command table filled, no thread started,
  no environment written;
- the layering holds and there is no import cycle within our packages (an AST walk of the
  imports every module makes at its top level, function-level imports included);
- app.build gives the hooks in the documented order and every ssh command in one table.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from gitserve import app
from gitserve.settings import Settings
from tests.support.tools import REPO_ROOT

PACKAGES = ("gitserve", "buildqueue", "deploy")
ROOT = Path(REPO_ROOT)


def our_modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts))
    return names


PROBE = r"""
import importlib, json, os, sys, threading
env_before = dict(os.environ)
threads_before = {t.ident for t in threading.enumerate()}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
# a hook or command filled at import time would be a module-level object with the
# PushHook shape, or a dict of Command values, somewhere in our modules
from gitserve.ssh.cmd.base import Command
hooks, tables = [], []
for name, module in list(sys.modules.items()):
    if not name.split(".")[0] in ("gitserve", "buildqueue", "deploy"):
        continue
    for attr, value in vars(module).items():
        if isinstance(value, type) or callable(value) and not hasattr(value, "after_push"):
            continue
        if hasattr(value, "before_update") and hasattr(value, "after_push"):
            hooks.append(f"{name}.{attr}")
        if isinstance(value, (dict, list)) and value and all(
                isinstance(v, Command) for v in (value.values() if isinstance(value, dict) else value)):
            tables.append(f"{name}.{attr}")
print(json.dumps({
    "hooks": hooks,
    "tables": tables,
    "threads": len({t.ident for t in threading.enumerate()} - threads_before),
    "env": sorted(k for k in os.environ if os.environ.get(k) != env_before.get(k)),
}))
"""


def test_importing_every_module_registers_nothing() -> None:
    modules = our_modules()
    assert "gitserve.app" in modules and "buildqueue.pushhook" in modules
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.splitlines()[-1])
    assert found == {"hooks": [], "tables": [], "threads": 0, "env": []}, found


def test_the_probe_would_see_a_registered_hook() -> None:
    """The probe above can fail: a module that keeps a hook instance is reported."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["tests.e2e.hookplugin"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.splitlines()[-1])["hooks"] == []  # a factory only: fine
    code = PROBE.replace("for name in json.loads(sys.argv[1]):",
                         "import gitserve.git.repack as r; r.HOOK = r.RepackAfterPush()\n"
                         "for name in json.loads(sys.argv[1]):")
    out = subprocess.run([sys.executable, "-c", code, json.dumps([])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.splitlines()[-1])["hooks"] == ["gitserve.git.repack.HOOK"]


# --- imports: layering and cycles ------------------------------------------------------

def imports_of(module: str) -> set[str]:
    """Our modules MODULE imports (anywhere in its file), as dotted names."""
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    known = set(our_modules())
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is not a cycle
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_within_our_packages() -> None:
    """Function-level imports count too: a cycle hidden inside a function is still two
    modules that each need the other."""
    graph = {m: imports_of(m) for m in our_modules()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == ["a.x", "a.y", "a.z", "a.x"]
    assert find_cycle({"a": {"a.x"}, "a.x": {"a"}}) is None  # package and its own module


# the composition root, the CLI and the HTTP face (its pages show builds and sites, as the
# CLI's commands do) sit on top and may import anything
TOP = ("gitserve.app", "gitserve.cli", "gitserve.http")


def _bottom(module: str) -> bool:
    """In gitserve/git or gitserve/acl (not merely a name starting so, like gitserve.gitolite_import)."""
    return module in ("gitserve.git", "gitserve.acl") or module.startswith(("gitserve.git.", "gitserve.acl."))


def test_layering() -> None:
    """cli on top; buildqueue and deploy use gitserve's core, never the reverse;
    gitserve/git and gitserve/acl at the bottom (they import no other gitserve module
    except the leaf helpers errors, fsutil, logsetup, settings, procscan and _compat)."""
    leaves = {"gitserve.errors", "gitserve.fsutil", "gitserve.logsetup", "gitserve.names",
              "gitserve.options", "gitserve.settings", "gitserve", "gitserve.procscan",
              # the one place library internals are used; imports nothing of ours
              "gitserve._compat", "gitserve._compat.dulwich", "gitserve._compat.paramiko"}
    bad = []
    for module in our_modules():
        if module.startswith(TOP):
            continue
        for target in imports_of(module):
            if target.startswith(TOP):
                bad.append(f"{module} -> {target} (only the CLI imports the top layer)")
            elif module.startswith("gitserve") and target.split(".")[0] in ("buildqueue", "deploy"):
                bad.append(f"{module} -> {target} (core must not use buildqueue/deploy)")
            elif _bottom(module) and target.startswith("gitserve") and target not in leaves and \
                    not _bottom(target):
                bad.append(f"{module} -> {target} (git/ and acl/ are the bottom layer)")
            elif module.startswith("buildqueue") and target.startswith("deploy") and \
                    not module.startswith("buildqueue.deploy_job"):
                bad.append(f"{module} -> {target}")
    assert bad == [], "\n".join(bad)


def test_git_request_knows_no_transport() -> None:
    """gitserve/gitrequest is the one git request under ssh, `gitserve shell` and smart HTTP:
    it imports none of them (they adapt it), and they reach nothing private of each other."""
    bad = [f"{m} -> {t}" for m in our_modules() if m.startswith("gitserve.gitrequest")
           for t in imports_of(m) if t.startswith(("gitserve.ssh", "gitserve.http"))]
    assert bad == [], bad
    assert "gitserve.gitrequest" in imports_of("gitserve.ssh.session")
    assert "gitserve.ssh.session" not in imports_of("gitserve.http.smart")


# --- the wiring itself ---------------------------------------------------------------

def test_app_wires_hooks_in_order_and_one_command_table(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    wired = app.build(settings)
    assert [type(getattr(h, "inner", h)).__name__ for h in wired.hooks] == [
        "LockedPaths", "BuildHook", "RepackAfterPush", "UpkeepService"]
    # locks and builds apply where the push was made, not again for a master's mirror push
    assert [type(h).__name__ for h in wired.hooks[:2]] == ["OriginOnly", "OriginOnly"]
    assert sorted(wired.commands) == ["builds", "deploy", "desc", "git-lfs-authenticate",
                                      "git-lfs-transfer", "help", "info", "login",
                                      "perms", "secrets", "token", "writable"]
    settings.server.commands = "fork D"  # Gitolite's optional commands join when enabled
    assert sorted(app.build(settings).commands) == [
        "D", "builds", "deploy", "desc", "fork", "git-lfs-authenticate", "git-lfs-transfer",
        "help", "info", "login", "perms", "secrets", "token", "writable"]
    settings.server.commands = ""
    assert [type(s).__name__ for s in wired.services] == [
        "EmbeddedRedisService", "LocalWorkersService", "SitesService", "SpoolService", "UpkeepService",
        "NotifierService", "HandoffService"]
    settings.redis.url = "redis://127.0.0.1:1"
    assert [type(s).__name__ for s in app.build(settings).services] == [
        "SitesService", "SpoolService", "UpkeepService", "NotifierService", "HandoffService"]
    settings.server.hostname = "frodo"  # mirroring: its hook, its queue, its command
    mirrored = app.build(settings)
    assert [type(getattr(h, "inner", h)).__name__ for h in mirrored.hooks] == [
        "LockedPaths", "BuildHook", "MirrorHook", "RepackAfterPush", "UpkeepService"]
    assert [type(s).__name__ for s in mirrored.services][-2:] == ["MirrorSyncer", "HandoffService"]
    assert "mirror" in mirrored.commands and "mirror" not in wired.commands


def test_site_hooks_come_first_and_bad_plugins_are_one_line(tmp_path: Path, monkeypatch) -> None:
    settings = Settings(home=tmp_path)
    monkeypatch.setenv(app.PLUGINS_ENV, "tests.e2e.hookplugin:push_hooks")
    assert [type(getattr(h, "inner", h)).__name__ for h in app.push_hooks(settings)][:3] == [
        "SlowReporter", "LockedPaths", "BuildHook"]
    for spec, message in (("no.such.module", "cannot import no.such.module"),
                          ("tests.e2e.hookplugin:nope", "has no factory nope(settings)")):
        monkeypatch.setenv(app.PLUGINS_ENV, spec)
        try:
            app.push_hooks(settings)
        except app.PluginError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{spec} accepted")


# --- ARCHITECTURE.md's lists are app.py's ---------------------------------------------

def _architecture_bullet(name: str) -> str:
    """The `- `NAME`: ...` bullet of ARCHITECTURE.md's composition-root section."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## The composition root", 1)[1].split("\n### ", 1)[0]
    match = re.search(rf"^- `{name}`: (.*?)(?=^- `|\Z)", section, re.S | re.M)
    assert match, f"ARCHITECTURE.md has no `{name}` bullet under The composition root"
    return match.group(1)


def _ticked(text: str, pattern: str) -> list[str]:
    return [t for t in re.findall(r"`([^`]+)`", text) if re.fullmatch(pattern, t)]


CLASS_NAME = r"(?:[A-Z][a-z0-9]+){2,}"


def test_architecture_lists_the_hooks_commands_and_services_app_wires(tmp_path: Path) -> None:
    """The map is checked against the territory: every hook (in order), every ssh command
    (optional ones enabled) and every service (in start order) app.build wires is named in
    ARCHITECTURE.md's composition-root section, and nothing else is."""
    settings = Settings(home=tmp_path)
    settings.server.commands = "D create fork symbolic-ref"
    settings.server.hostname = "frodo"  # mirroring on: its hook, command and service too
    wired = app.build(settings)
    assert _ticked(_architecture_bullet("hooks"), CLASS_NAME) == [
        type(getattr(h, "inner", h)).__name__ for h in wired.hooks]
    assert sorted(_ticked(_architecture_bullet("commands"), r"[A-Za-z][\w-]*")) == sorted(wired.commands)
    assert _ticked(_architecture_bullet("services"), CLASS_NAME) == [
        type(s).__name__ for s in wired.services]


def test_the_architecture_check_can_fail() -> None:
    assert _ticked("`info`, `[server] commands`, `git-lfs-transfer`", r"[A-Za-z][\w-]*") == [
        "info", "git-lfs-transfer"]
    assert _ticked("`GITSERVE_PLUGINS` then `BuildHook`, `redis.url`", CLASS_NAME) == ["BuildHook"]
