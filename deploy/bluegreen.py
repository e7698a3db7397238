"""Blue-green deploy and rollback of one site (SPEC §7), in the order the seed did by hand.

deploy: publish the output as a new release -> point the idle slot at it -> render the site
config (live server on the `live` symlink, preview server on the idle slot) -> `nginx -t`
-> reload -> GET deploy.check on the preview (200, from the new config) -> switch `live` to
the idle slot by rename(2) -> render + reload (the preview now shows the old side) -> prune
-> deploy.post -> `Enable: SIDE`.

Until the switch nothing the live server reads has changed, so every failure before it
leaves the live site exactly as it was; the switch itself is one rename, so there is no
moment with neither side live, and a crash at any point leaves one whole release live.
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

from . import nginx, previews, processes, procfile, sitesctl, tls
from .check import check_preview
from .errors import DeployError
from .options import SiteOptions, check_release_id, check_site_name, parse
from .post import run_post
from .publish import clean_partials, publish, remove_release
from .render import render_builtin, render_file
from .site import SIDES, Site, all_sites, other_side

LOCK_TIMEOUT = 900.0     # a deploy waits this long for the one before it
RELOAD_TIMEOUT = 10.0    # for nginx to serve a new config (and the check to answer)
PROCESS_START_TIMEOUT = 60.0  # for a side's processes to start and deploy.check to answer 200

Log = Callable[[str], None]


@dataclass
class DeployResult:
    site: str
    side: str                     # the side live now
    release: str                  # the release live now
    previous_side: str | None
    previous_release: str | None
    switch_seconds: float         # the rename(2) of `live`: the moment the live server flips
    seconds: float                # the whole deploy, lock wait included
    skipped: str | None = None    # why nothing was deployed (a newer push is already live)
    post_status: int | None = None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _step(step: str, func: Callable[[], Any]) -> Any:
    try:
        return func()
    except nginx.NginxError as exc:
        raise DeployError(step, str(exc)) from exc


def check_ports(settings: Settings, opts: SiteOptions) -> None:
    """Two sites on one port would silently serve each other's files."""
    mine = {opts.listen.port, opts.preview.port}
    for name in all_sites(settings.sites_dir):
        if name == opts.site:
            continue
        state = Site(settings.sites_dir, name).load_state()
        theirs = {state.get("port"), state.get("preview_port")}
        clash = mine & theirs
        if clash:
            raise DeployError("options", f"port {clash.pop()} is already used by site {name}")


class _Config:
    """Writes, tests and reloads one site's nginx config; undoes the write if nginx refuses."""

    def __init__(self, settings: Settings, site: Site, opts: SiteOptions, say: Log) -> None:
        self.settings, self.site, self.opts, self.say = settings, site, opts, say

    def render(self, live_side: str | None, idle_side: str, token: str) -> str:
        context = dict(
            site=self.site.name,
            listen=self.opts.listen.nginx(),
            preview_listen=self.opts.preview.nginx(),
            server_name=self.opts.server_name,
            live_root=self.site.live_link,
            preview_root=self.site.slot(idle_side),
            live_side=live_side,
            idle_side=idle_side,
            live_release=self.site.slot_release(live_side),
            idle_release=self.site.slot_release(idle_side),
            config_token=token,
            check=self.opts.check,
            previews=previews.listed(self.site, self.site.load_state()),
            preview_procs=_preview_upstreams(self.settings, self.site, self.opts),
            **_tls_context(self.settings, self.site.name, self.opts),
            live_upstreams=_upstreams(self.settings, self.site.name, self.opts, live_side),
            preview_upstreams=_upstreams(self.settings, self.site.name, self.opts, idle_side),
        )
        override = self.site.template_override
        if override.is_file():
            return render_file(override, **context)
        return render_builtin("site.conf.j2", **context)

    def apply(self, live_side: str | None, idle_side: str) -> nginx.Reload:
        """Write + `nginx -t` + reload, then wait until the preview answers from the new
        config and the old workers stopped accepting. On failure the previous file is put
        back (nginx keeps serving the old one). Returns the reload (its old workers may still
        be finishing requests under the config before)."""
        token = secrets.token_hex(8)
        text = self.render(live_side, idle_side, token)
        path = _step("nginx config", lambda: nginx.site_conf(self.settings, self.site.name))
        with nginx.lock(self.settings):
            path.parent.mkdir(parents=True, exist_ok=True)
            old = path.read_text() if path.exists() else None
            if nginx.is_embedded(self.settings):
                wanted = [(self.opts.listen.host, self.opts.listen.port),
                          (self.opts.preview.host, self.opts.preview.port)]
                taken = nginx.ports_taken(wanted, old)
                if taken:
                    raise DeployError("nginx config", f"port {taken[0]} is in use by another program")
            atomic_write(path, text)
            try:
                _step("nginx -t", lambda: nginx.test(self.settings))
                self.say("nginx -t: ok")
                mark = nginx.error_log_size(self.settings) if nginx.is_embedded(self.settings) else 0
                done = _step("reload", lambda: nginx.reload(self.settings))
            except DeployError:
                self._restore(path, old)
                raise
        embedded = nginx.is_embedded(self.settings)

        about = (str(path), *(f":{port} " for port in nginx.listen_ports(text)))

        def refused() -> str | None:
            return nginx.error_log_tail(self.settings, mark, about=about) if embedded else None

        try:
            check_preview(self.opts.preview, self.opts.check, token if token in text else None,
                          RELOAD_TIMEOUT, give_up=refused)
            _wait_until(done.old_workers_stopped_accepting, RELOAD_TIMEOUT,
                        "the old nginx workers did not stop accepting connections")
        except TimeoutError as exc:
            why = nginx.error_log_tail(self.settings, mark) if embedded else None
            with nginx.lock(self.settings):
                self._restore(path, old)
                try:
                    nginx.reload(self.settings)
                except nginx.NginxError:
                    pass
            raise DeployError("reload", f"nginx did not load the new config: {why or exc}") from exc
        self.say(f"reload: ok ({done.how})")
        return done

    @staticmethod
    def _restore(path: Path, old: str | None) -> None:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, old)


def _tls_context(settings: Settings, site: str, opts: SiteOptions) -> dict[str, Any]:
    """Template variables for deploy.tls: the challenge root (acme) and the certificate, once
    there is one (an acme site serves http only until its first order went through)."""
    ctx: dict[str, Any] = {"acme_root": None, "tls_cert": None, "tls_key": None,
                           "tls_listen": opts.tls_listen.nginx() if opts.tls_listen else None}
    kind = tls.parse_option(opts.tls) if opts.tls else None
    if kind == "acme":
        ctx["acme_root"] = tls.challenge_root(settings, site)
        files = tls.site_files(settings, site)
        if files.cert.is_file() and files.key.is_file():
            ctx.update(tls_cert=files.cert, tls_key=files.key)
    elif isinstance(kind, tuple):
        files = tls.given_files(settings, *kind)
        ctx.update(tls_cert=files.cert, tls_key=files.key)
    return ctx


def _ensure_tls(settings: Settings, s: Site, opts: SiteOptions, say: Log) -> None:
    """deploy.tls = acme: order (or renew) the certificate through the live nginx, then serve
    https. A failed order costs the deploy nothing (http keeps serving): it is said, and the
    sites supervisor tries again."""
    if not opts.tls or tls.parse_option(opts.tls) != "acme":
        return
    names = opts.server_name.split()
    if not tls.needs_order(settings, s.name, names):
        return
    try:
        tls.order(settings, s.name, names, say)
    except DeployError as exc:
        say(f"warning: {exc}")
        return
    live = s.live_side()
    _Config(settings, s, opts, say).apply(live, other_side(live))


def renew_tls(settings: Settings, site: str, log: Log = print) -> None:
    """The daily renewal `gitserve sites` runs for every acme site (30 days before expiry)."""
    s = Site(settings.sites_dir, check_site_name(site))

    def say(line: str) -> None:
        log(f"tls {site}: {line}")

    with s.lock("certificate renewal", LOCK_TIMEOUT, say):
        state = s.load_state()
        if not isinstance(state.get("options"), dict):
            return
        _ensure_tls(settings, s, parse(s.name, state["options"], settings.deploy.keep), say)


def _upstreams(settings: Settings, site: str, opts: SiteOptions, side: str | None
               ) -> list[tuple[str, int]]:
    """(path prefix, port) nginx proxies to for SIDE's processes, longest prefix first and
    `/` (deploy.web) last; [] when SIDE runs no processes (a static release)."""
    ports = processes.side_ports(settings, site, side)
    if not ports:
        return []
    found = [(prefix, ports[kind]) for prefix, kind in sorted(opts.routes, key=lambda r: -len(r[0]))
             if kind in ports]
    if opts.web in ports:
        found.append(("/", ports[opts.web]))
    return found


def _preview_upstreams(settings: Settings, site: Site, opts: SiteOptions
                       ) -> dict[str, list[tuple[str, int]]]:
    """{host: upstreams} of the branch previews that run processes (deploy.previews)."""
    found: dict[str, list[tuple[str, int]]] = {}
    for label, meta in sorted(dict(site.load_state().get("previews") or {}).items()):
        if isinstance(meta, dict) and meta.get("processes"):
            ups = _upstreams(settings, site.name, opts, processes.preview_side(label))
            if ups:
                found[str(meta.get("host"))] = ups
    return found


def _start_processes(settings: Settings, s: Site, opts: SiteOptions, side: str, release: str,
                     runtime: Mapping[str, Any], say: Log) -> dict[str, int] | None:
    """Start RELEASE's Procfile processes on SIDE (None: a static release, nothing to run)."""
    commands = procfile.read(s.release_dir(release))
    if commands is None:
        processes.stop_side(settings, s.name, side)  # whatever a process release left there
        return None
    missing = [kind for kind in [opts.web, *(k for _, k in opts.routes)] if kind not in commands]
    if missing:
        raise DeployError("procfile", f"Procfile has no {missing[0]} process (deploy.web / "
                          f"deploy.routes name it; it has {', '.join(sorted(commands))})")
    uid = runtime.get("uid")
    ports = processes.start_side(settings, s.name, side, release, s.release_dir(release), commands,
                                 dict(runtime.get("env") or {}), int(uid) if uid is not None else None)
    processes.wait_running(settings, s.name, side, PROCESS_START_TIMEOUT)
    say(f"processes: {' '.join(f'{k}:{p}' for k, p in sorted(ports.items()))} on {side} "
        f"(release {release})")
    return ports


def _saved_runtime(settings: Settings, site: str) -> dict[str, Any]:
    """The environment (repo secrets) and uid the last deploy gave the processes: rollback
    and restart have no push to take them from."""
    try:
        data = json.loads((processes.site_dir(settings, site) / "runtime.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_runtime(settings: Settings, site: str, runtime: Mapping[str, Any]) -> None:
    path = processes.site_dir(settings, site) / "runtime.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(dict(runtime)), mode=0o600)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def _check(opts: SiteOptions, side: str, release: str, say: Log, wait: float = 0.0) -> None:
    """GET deploy.check on the preview must answer 200; with WAIT (processes that may still
    be starting), nginx's 502/503/504 (nothing listens on the port yet) are retried until
    WAIT seconds have passed; any other answer is the app's own, and final."""
    deadline = time.monotonic() + wait
    while True:
        try:
            resp = check_preview(opts.preview, opts.check, None, RELOAD_TIMEOUT)
        except TimeoutError as exc:
            raise DeployError("check", f"GET {opts.check} on the preview ({side}): {exc}") from exc
        if resp.status not in (502, 503, 504) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if resp.status != 200:
        raise DeployError("check", f"GET {opts.check} on the preview ({side}, release {release}) "
                          f"answered {resp.status}, not 200")
    say(f"check: GET {opts.check} on {opts.preview.url()} ({side}) -> 200")


def _switch(site: Site, opts: SiteOptions, to_side: str, release: str, say: Log) -> float:
    """Point `live` at TO_SIDE; returns how long the rename(2) took (the durable version,
    with the directory fsync, is logged too)."""
    t0 = time.monotonic()
    rename = site.point_live(to_side)
    seconds = time.monotonic() - t0
    say(f"switch: live -> {to_side} (release {release}): rename {rename * 1e6:.0f} us, "
        f"{seconds * 1000:.1f} ms with fsync")
    return rename


def _prune(site: Site, state: dict[str, Any], keep: int, say: Log) -> None:
    """Keep the last KEEP releases that went live, plus whatever a slot points at."""
    protected = {site.slot_release(s) for s in SIDES} - {None}
    deployed = [r for r in state["deployed"] if site.release_dir(r).is_dir()]
    kept = set(deployed[-keep:]) | protected
    removed = []
    for release in site.releases_on_disk():
        if release not in kept:
            remove_release(site.releases_dir, release)
            removed.append(release)
    went_live = set(state["deployed"])
    state["deployed"] = [r for r in state["deployed"] if r in kept]
    state["releases"] = {k: v for k, v in state["releases"].items() if k in kept}
    # say which is which: a release that failed its check (kept on the preview for
    # inspection until now) is not an "old release" that deploy.keep counts
    old = [r for r in removed if r in went_live]
    never = [r for r in removed if r not in went_live]
    if old:
        say(f"pruned {len(old)} old release{'' if len(old) == 1 else 's'}: {', '.join(old)} "
            f"(deploy.keep = {keep})")
    if never:
        say(f"removed release{'' if len(never) == 1 else 's'} {', '.join(never)}, which never "
            "went live")


def _superseded(state: dict[str, Any], site: Site, meta: Mapping[str, Any]) -> str | None:
    """Concurrent pushes: the lock serializes them, and a deploy that got the lock after a
    LATER push went live steps aside, so the last push wins whatever the worker order.
    Push order: meta['pushed_at'] when both have it, else numeric build ids (buildqueue
    numbers builds from one Redis counter as pushes arrive)."""
    live = site.slot_release(site.live_side())
    if live is None:
        return None
    mine, theirs = meta.get("pushed_at"), state["releases"].get(live, {}).get("pushed_at")
    if mine is not None and theirs is not None:
        newer = float(theirs) > float(mine)
    else:
        build = str(meta.get("build_id", ""))
        newer = build.isdigit() and live.isdigit() and int(live) > int(build)
    return f"build {live} was pushed later and is already live" if newer else None


def _post_policy(settings: Settings, meta: Mapping[str, Any] | None) -> Any:
    """deploy.post's sandbox: the deploy job's own (the build's, held to the worker's floor,
    with the repo's uid), else the server's [builds] as the repo's uid."""
    from gitserve.sandbox import Policy

    meta = meta or {}
    if isinstance(meta.get("sandbox_policy"), dict):
        return Policy.from_payload(meta["sandbox_policy"])
    uid = meta.get("sandbox_uid")
    return Policy.from_settings(settings.builds).with_uid(int(uid) if uid is not None else None)


@dataclass(frozen=True)
class Order:
    """What every deploy of a build checks first, on one host or on deploy agents."""

    name: str
    release: str
    opts: SiteOptions
    say: Log          # `deploy SITE: ...` lines into the pusher's log
    started: float


def read_order(settings: Settings, site: str, options: Mapping[str, str],
               meta: Mapping[str, Any], log: Log) -> Order:
    """SITE's name, the release name (meta['build_id']) and its options, read strictly; a
    bad one is a `FAILED at options` line and DeployError."""
    started = time.monotonic()
    name = check_site_name(site)

    def say(line: str) -> None:
        log(f"deploy {name}: {line}")

    try:
        opts = parse(name, options, settings.deploy.keep)
        release = check_release_id(meta.get("build_id", ""))
    except DeployError as exc:
        raise _failed(say, exc, None, None) from None
    return Order(name, release, opts, say, started)


def deploy_release(settings: Settings, site: str, output_dir: Path, options: Mapping[str, str],
                   meta: Mapping[str, Any], log: Log, post_workdir: Path | None = None
                   ) -> DeployResult:
    """Deploy OUTPUT_DIR (the build's deploy.dir, already extracted) as release
    meta['build_id'] of SITE. Raises DeployError naming the failed step; on any failure
    before the switch the live site is exactly as it was.

    meta: build_id, repo, ref, commit, pusher, optional pushed_at (epoch seconds, orders
    concurrent pushes) and env (extra environment for deploy.post, e.g. secrets)."""
    order = read_order(settings, site, options, meta, log)
    name, release, opts, say, started = order.name, order.release, order.opts, order.say, order.started
    try:
        check_ports(settings, opts)
        nginx.sites_conf_dir(settings)  # a bad [deploy] mode or missing conf_dir fails here
        if nginx.is_embedded(settings) or not settings.deploy.test_command:
            nginx.binary(settings)
    except nginx.NginxError as exc:
        raise _failed(say, DeployError("options", str(exc)), None, None) from exc
    except DeployError as exc:
        raise _failed(say, exc, None, None) from None
    s = Site(settings.sites_dir, name)
    s.ensure()
    try:
        sitesctl.ensure_running(settings)  # keeps nginx (and processes) up after we are gone
    except DeployError as exc:
        raise _failed(say, exc, s.live_side(), s.slot_release(s.live_side())) from None
    holder = f"deploy of build {release} by {meta.get('pusher', '?')}"
    with s.lock(holder, LOCK_TIMEOUT, say):
        live = s.live_side()
        live_release = s.slot_release(live)
        try:
            state = s.load_state()
            owner, repo = state.get("repo"), meta.get("repo")
            if owner and repo and owner != repo:
                # access to a site follows its repo: a second repo must not take it over
                raise DeployError("options", f"site {name} is deployed from repo {owner}, not {repo}")
            branch = str(options.get("deploy.preview") or "")
            if branch:
                return _deploy_preview(settings, s, state, opts, options, branch, Path(output_dir),
                                       meta, say, started)
            state["pending_options"] = {k: str(v) for k, v in options.items()
                                        if k.startswith("deploy.")}
            return _deploy_locked(settings, s, state, opts, Path(output_dir), release, meta, say,
                                  log, post_workdir, started)
        except DeployError as exc:
            _audit(settings, meta.get("pusher"), "deploy", "error", meta.get("repo"),
                   f"{name}: build {release}: {exc}")
            raise _failed(say, exc, live, live_release) from None


def _deploy_preview(settings: Settings, s: Site, state: dict[str, Any], opts: SiteOptions,
                    options: Mapping[str, str], branch: str, output_dir: Path,
                    meta: Mapping[str, Any], say: Log, started: float) -> DeployResult:
    """A branch's build goes live at BRANCH.SERVER_NAME (deploy.previews); blue/green untouched."""
    if not previews.enabled(options):
        raise DeployError("options", "a branch preview needs option deploy.previews = 1")
    live = s.live_side()
    live_release = s.slot_release(live)

    def apply() -> nginx.Reload:
        return _Config(settings, s, opts, say).apply(live, other_side(live))

    runtime = {"env": {str(k): str(v) for k, v in dict(meta.get("env") or {}).items()},
               "uid": meta.get("sandbox_uid")}
    previews.deploy_preview(s, state, opts, branch, output_dir, meta, apply, say,
                            previews.settings_limit(options), settings=settings, runtime=runtime)
    return DeployResult(s.name, live or "", live_release or "", live, live_release, 0.0,
                        time.monotonic() - started, skipped=f"preview of branch {branch}")


def remove_branch_preview(settings: Settings, site: str, branch: str, log: Log = print) -> bool:
    """The branch was deleted: its preview goes (SPEC §7.1). False when it had none."""
    name = check_site_name(site)
    s = Site(settings.sites_dir, name)
    if not s.exists():
        return False

    def say(line: str) -> None:
        log(f"deploy {name}: {line}")

    with s.lock(f"removal of the preview of {branch}", LOCK_TIMEOUT, say):
        state = s.load_state()
        stored = state.get("options")
        if not isinstance(stored, dict):  # never deployed live: no config to re-render
            opts = None
        else:
            opts = parse(name, stored, settings.deploy.keep)

        def apply() -> nginx.Reload | None:
            if opts is None:
                return None
            return _Config(settings, s, opts, say).apply(s.live_side(), other_side(s.live_side()))

        return previews.remove_preview(s, state, branch, apply, say, settings=settings)


def _audit(settings: Settings, user: Any, op: str, result: str, repo: Any, reason: str) -> None:
    """Switches and failed deploys join the audit log (who changed what a site serves)."""
    from gitserve import audit

    audit.record(settings, user=str(user) if user else None, op=op, result=result,
                 repo=str(repo) if repo else None, reason=reason)


def _failed(say: Log, exc: DeployError, live: str | None, release: str | None) -> DeployError:
    where = f"live stays {live} (release {release})" if live else "nothing is live yet"
    say(f"FAILED at {exc.step}: {exc.message}; {where}")
    return exc


def _deploy_locked(settings: Settings, s: Site, state: dict[str, Any], opts: SiteOptions,
                   output_dir: Path, release: str, meta: Mapping[str, Any], say: Log, log: Log,
                   post_workdir: Path | None, started: float) -> DeployResult:
    clean_partials(s.releases_dir)
    live = s.live_side()
    live_release = s.slot_release(live)
    idle = other_side(live)
    skipped = _superseded(state, s, meta)
    if skipped:
        say(f"skipped: {skipped}")
        return DeployResult(s.name, live or idle, live_release or "", live, live_release, 0.0,
                            time.monotonic() - started, skipped=skipped)
    prepare_locked(settings, s, state, opts, output_dir, release, meta, say)

    # 5. switch, then move the preview to the old side
    return finish_switch(settings, s, opts, state, live, idle, release, "deploy",
                         meta.get("pusher"), say, log, post_workdir, meta, started)


def prepare_locked(settings: Settings, s: Site, state: dict[str, Any], opts: SiteOptions,
                   output_dir: Path, release: str, meta: Mapping[str, Any], say: Log) -> None:
    """Steps 1-4 of a deploy, the site's lock held: RELEASE published on the idle side, its
    processes started, the preview config loaded and deploy.check answered 200 there. The
    live side is untouched; on failure the idle side is as it was (DeployError). Deploy
    agents run this as phase one and `finish_switch` as phase two (deploy/agents/)."""
    live = s.live_side()
    live_release = s.slot_release(live)
    idle = other_side(live)
    if release == live_release:
        raise DeployError("publish", f"release {release} is already live on {live}")
    if s.release_dir(release).is_dir():
        if release == s.slot_release(idle):
            s.point_slot(idle, None)
        remove_release(s.releases_dir, release)  # a retried deploy of the same build

    # 1. publish
    files, size = publish(output_dir, s.releases_dir, release)
    state["releases"][release] = {
        "build_id": release,
        **{k: meta.get(k) for k in ("repo", "ref", "commit", "pusher", "pushed_at")},
        "published_at": _now(), "files": files, "bytes": size, "status": "published",
    }
    s.save_state(state)
    old_idle_release = s.slot_release(idle)
    s.point_slot(idle, release)
    say(f"publish: {files} file{'' if files == 1 else 's'}, {size} byte{'' if size == 1 else 's'} "
        f"as release {release} on {idle}")

    # 2. the release's processes (Procfile) on the idle side, under `gitserve sites`
    runtime = {"env": {str(k): str(v) for k, v in dict(meta.get("env") or {}).items()},
               "uid": meta.get("sandbox_uid")}
    try:
        ports = _start_processes(settings, s, opts, idle, release, runtime, say)
        if ports is not None:
            _save_runtime(settings, s.name, runtime)
    except DeployError:
        processes.stop_side(settings, s.name, idle)
        s.point_slot(idle, old_idle_release)
        state["releases"][release]["status"] = "failed"
        s.save_state(state)
        raise

    # 3. config for the preview of the idle side, nginx -t, reload
    config = _Config(settings, s, opts, say)
    try:
        config.apply(live, idle)
    except DeployError:
        processes.stop_side(settings, s.name, idle)
        s.point_slot(idle, old_idle_release)  # the preview shows what it showed before
        state["releases"][release]["status"] = "failed"
        s.save_state(state)
        raise

    # 4. check the candidate where it will run
    try:
        _check(opts, idle, release, say, PROCESS_START_TIMEOUT if ports is not None else 0.0)
    except DeployError:
        state["releases"][release]["status"] = "check failed"
        s.save_state(state)
        if ports is not None:  # nothing to inspect once stopped; the live side keeps serving
            processes.stop_side(settings, s.name, idle)
            say(f"stopped the {idle} processes; live stays as it was")
        else:
            say(f"the failed release stays on the preview {opts.preview.url()} for inspection")
        raise


def finish_switch(settings: Settings, s: Site, opts: SiteOptions, state: dict[str, Any],
                  live: str | None, idle: str, release: str, action: str, by: Any, say: Log,
                  log: Log, post_workdir: Path | None, meta: Mapping[str, Any] | None,
                  started: float) -> DeployResult:
    """The switch (step 5 on): IDLE holding RELEASE (prepared, checked) goes live, the
    preview moves to the old side, the old processes drain, old releases are pruned,
    deploy.post runs (a deploy's). Deploy agents call it as phase two."""
    live_release = s.slot_release(live)
    proxied = bool(processes.side_ports(settings, s.name, idle) or processes.side_ports(settings, s.name, live))
    t0 = time.monotonic()
    switch_seconds = _switch(s, opts, idle, release, say)
    entry = state["releases"].setdefault(release, {"build_id": release})
    entry["status"] = "live"
    entry["deployed_at"] = _now()
    if live_release and live_release in state["releases"]:
        state["releases"][live_release]["status"] = "previous"
    if action == "deploy":
        if release not in state["deployed"]:
            state["deployed"].append(release)
        # what rollback and status use: the options of the last deploy that went live
        state.update(options=state.get("pending_options", {}), port=opts.listen.port,
                     preview_port=opts.preview.port, listen=opts.listen.url(),
                     preview=opts.preview.url(), repo=(meta or {}).get("repo"))
    state.pop("pending_options", None)
    state["history"].append({"action": action, "release": release, "side": idle, "at": _now(),
                             "by": by, "from_side": live, "from_release": live_release,
                             "switch_ms": round(switch_seconds * 1000, 1)})
    s.save_state(state)
    _audit(settings, by, "deploy" if action == "deploy" else f"deploy {action}", "updated",
           state.get("repo"), f"{s.name}: live {live or '-'} -> {idle} (release {release})")
    switched: nginx.Reload | None = None
    try:
        switched = _Config(settings, s, opts, say).apply(idle, other_side(idle))
        if proxied:  # a proxied site switches with this reload (the rename only records it)
            switch_seconds = time.monotonic() - t0
            say(f"switch: nginx proxies to {idle} ({switch_seconds * 1000:.0f} ms with the reload)")
    except DeployError as exc:
        if proxied:
            s.point_live(live or other_side(idle))  # nginx still proxies to the old side
            raise
        # live already switched (the rename is what serves it); only the preview lags
        say(f"warning: preview not moved to {other_side(idle)}: {exc}")
    if live is not None and processes.side_ports(settings, s.name, live):
        # nginx's old workers finish what they hold, some of it from the old side: it stops
        # after the drain AND once they are gone, so no request in flight is cut
        holding = switched.old_workers_alive() if switched is not None else []
        processes.stop_side(settings, s.name, live, after=opts.drain, hold=holding)
        say(f"drain: the {live} processes stop in {opts.drain}s (deploy.drain)"
            + (f", not before the {len(holding)} old nginx worker(s) finished" if holding else ""))
    _prune(s, state, opts.keep, say)
    s.save_state(state)
    _ensure_tls(settings, s, opts, say)
    result = DeployResult(s.name, idle, release, live, live_release, switch_seconds,
                          time.monotonic() - started)
    post_error: DeployError | None = None
    if action == "deploy" and opts.post:
        if post_workdir is None:
            post_error = DeployError("post", "deploy.post is set but no checkout of the commit was given")
        else:
            env = {"LIVE_SIDE": idle, "IDLE_SIDE": other_side(idle), "SITE": s.name}
            env.update({procfile.port_env_name(kind): str(port) for kind, port
                        in processes.side_ports(settings, s.name, idle).items()})
            env.update({str(k): str(v) for k, v in dict((meta or {}).get("env") or {}).items()})
            say(f"post: {opts.post} (LIVE_SIDE={idle} IDLE_SIDE={other_side(idle)})")
            try:
                rc = run_post(Path(post_workdir), opts.post, env, log,
                              policy=_post_policy(settings, meta), settings_home=settings.home,
                              hide=[Path(h) for h in (meta or {}).get("sandbox_hide") or []],
                              # from its own network namespace post reaches the new live
                              # side's processes and the site's live server, nothing else
                              reach=(*processes.side_ports(settings, s.name, idle).values(),
                                     opts.listen.port))
                result.post_status = rc
                if rc != 0:
                    post_error = DeployError("post", f"deploy.post {opts.post} exited with {rc}")
            except DeployError as exc:
                post_error = exc
    log(f"Enable: {idle}")
    if post_error is not None:
        say(f"FAILED at post: {post_error.message}; live is {idle} (release {release})")
        raise post_error
    say(f"done: live is {idle} (release {release}) in {result.seconds:.1f}s")
    return result


def rollback(settings: Settings, site: str, to: str | None = None, by: str | None = None,
             log: Log = print) -> DeployResult:
    """Switch SITE back to the release deployed before the live one (or TO), in one step:
    point the idle slot at it, check it on the preview, rename `live`. No deploy.post:
    that script belongs to a commit checkout only the deploy job has."""
    with _live_site(settings, site, "rollback", "roll back", by, log) as now:
        s, name, state, live, current = now.site, now.site.name, now.state, now.live, now.release
        if to is not None:
            target = check_release_id(to)
            if not s.release_dir(target).is_dir():
                kept = ", ".join(reversed([r for r in state["deployed"] if s.release_dir(r).is_dir()]))
                raise DeployError("rollback", f"release {target} of site {name} is not kept "
                                  f"(kept: {kept or 'none'})")
            if target == current:
                raise DeployError("rollback", f"release {target} is already live")
        else:
            order = [r for r in state["deployed"] if s.release_dir(r).is_dir()]
            before = order[: order.index(current)] if current in order else order
            if not before:
                raise DeployError("rollback", f"site {name} has no release before {current} to roll back to")
            target = before[-1]
        opts = stored_options(s, state, settings)
        return _switch_to(settings, s, opts, state, live, target, "rollback", by, now.say, log,
                          now.started)


@dataclass
class _LiveSite:
    """A site with something live, locked for one rollback or restart."""

    site: Site
    state: dict[str, Any]
    live: str
    release: str
    say: Log
    started: float


@contextmanager
def _live_site(settings: Settings, site: str, action: str, verb: str, by: str | None,
               log: Log) -> Iterator[_LiveSite]:
    """What rollback and restart both start with: SITE checked, `gitserve sites` running, the
    site's lock held (ACTION by BY), and its live side and release, or DeployError(ACTION)
    when there is no such site or nothing live to VERB."""
    started = time.monotonic()
    name = check_site_name(site)

    def say(line: str) -> None:
        log(f"{action} {name}: {line}")

    s = Site(settings.sites_dir, name)
    if not s.exists():
        raise DeployError(action, f"no site {name}")
    sitesctl.ensure_running(settings)
    with s.lock(f"{action} by {by or '?'}", LOCK_TIMEOUT, say):
        state = s.load_state()
        live = s.live_side()
        current = s.slot_release(live)
        if live is None or current is None:
            raise DeployError(action, f"site {name} has nothing live to {verb}")
        yield _LiveSite(s, state, live, current, say, started)


def _switch_to(settings: Settings, s: Site, opts: SiteOptions, state: dict[str, Any], live: str,
               target: str, action: str, by: str | None, say: Log, log: Log,
               started: float) -> DeployResult:
    """Rollback and restart: TARGET (kept on disk) on the idle side, its processes started
    there, checked through the preview, switched; the old side drains."""
    idle = prepare_kept(settings, s, opts, live, target, say)
    return finish_switch(settings, s, opts, state, live, idle, target, action, by, say,
                         log, None, None, started)


def prepare_kept(settings: Settings, s: Site, opts: SiteOptions, live: str, target: str,
                 say: Log) -> str:
    """TARGET (a release kept on disk) on the idle side, its processes started with the
    last deploy's runtime, the preview config loaded and deploy.check answered 200 there;
    returns the idle side. On failure the idle side's processes stop (DeployError). Rollback
    and restart, here and on deploy agents (deploy/agents/phases.py), start this way."""
    idle = other_side(live)
    if s.slot_release(idle) != target:
        s.point_slot(idle, target)
    try:
        ports = _start_processes(settings, s, opts, idle, target, _saved_runtime(settings, s.name), say)
        _Config(settings, s, opts, say).apply(live, idle)
        _check(opts, idle, target, say, PROCESS_START_TIMEOUT if ports is not None else 0.0)
    except DeployError:
        processes.stop_side(settings, s.name, idle)
        raise
    return idle


def restart(settings: Settings, site: str, by: str | None = None, log: Log = print,
            kind: str | None = None) -> DeployResult:
    """`deploy restart SITE [TYPE]`: the live release started afresh on the idle side,
    checked, switched, the old processes drained: every process restarted, no request
    failed. A TYPE nginx sends no traffic to (not deploy.web, not in deploy.routes) is
    restarted in place instead, on its port; one that takes traffic restarts the side."""
    with _live_site(settings, site, "restart", "restart", by, log) as now:
        s, name, state, live, current = now.site, now.site.name, now.state, now.live, now.release
        say, started = now.say, now.started
        ports = processes.side_ports(settings, name, live)
        if not ports:
            raise DeployError("restart", f"site {name} is static (no Procfile): nothing to restart")
        opts = stored_options(s, state, settings)
        if kind is not None:
            if kind not in ports:
                raise DeployError("restart", f"site {name} has no {kind} process "
                                  f"(it has {', '.join(sorted(ports))})")
            if kind != opts.web and kind not in {k for _, k in opts.routes}:
                before = {r["type"]: r for r in processes.current_rows(settings, name, live)}.get(kind, {})
                processes.restart_in_place(settings, name, live, kind)
                _wait_until(lambda: any(r.get("type") == kind and r.get("pid")
                                        and r.get("restarts", 0) > before.get("restarts", 0)
                                        for r in processes.current_rows(settings, name, live)),
                            PROCESS_START_TIMEOUT, f"{kind} did not come back")
                say(f"{kind} restarted in place on {live} (it takes no HTTP traffic)")
                return DeployResult(name, live, current, live, current, 0.0, time.monotonic() - started)
            say(f"{kind} takes HTTP traffic: the whole {live} side restarts through {other_side(live)}")
        return _switch_to(settings, s, opts, state, live, current, "restart", by, say, log, started)


def stored_options(s: Site, state: dict[str, Any], settings: Settings) -> SiteOptions:
    """The site's options as the last deploy saved them (rollback has no push to read)."""
    stored = state.get("options")
    if not isinstance(stored, dict):
        raise DeployError("rollback", f"site {s.name} has no recorded deploy options")
    return parse(s.name, stored, settings.deploy.keep)
