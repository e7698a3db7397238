"""`git clone` over HTTP of the large benchmark repo: gitserve's smart HTTP vs `git
http-backend` behind nginx (fcgiwrap), the usual way to serve git over HTTP.

    python -m tests.bench.http_clone_vs_backend [--repo large] [--runs 3]

Both serve the same bare repository (gitserve's copy shares the pack files by hard links)
on 127.0.0.1, anonymously (`R = daemon` on gitserve; GIT_HTTP_EXPORT_ALL on http-backend),
to the same client with the same protocol version (`--protocol`, default 2: git's default).
Rounds alternate which server goes first; the table shows medians of wall time per full
bare clone, and the ratio gitserve/http-backend (target: at most 1.2x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import repogen
from tests.support.tools import find_tool, free_port

NGINX_CONF = """
{user}
worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  fastcgi_temp_path {work}/fastcgi;
  proxy_temp_path {work}/proxy;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/(.*/(HEAD|info/refs|objects/info/.*|git-upload-pack))$ {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO /$1;
      fastcgi_buffering off;
      fastcgi_read_timeout 600s;
      fastcgi_pass unix:{work}/fcgiwrap.sock;
    }}
  }}
}}
"""


class HttpBackend:
    """nginx + fcgiwrap + git http-backend serving ROOT on a free port."""

    def __init__(self, work: Path, root: Path) -> None:
        nginx, fcgiwrap = find_tool("nginx"), find_tool("fcgiwrap")
        if nginx is None or fcgiwrap is None:
            raise SystemExit("needs nginx and fcgiwrap (apt-get install nginx fcgiwrap)")
        backend = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                 check=True).stdout.strip() + "/git-http-backend"
        self.port = free_port()
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.fcgi = subprocess.Popen([fcgiwrap, "-c", "4", "-s", f"unix:{work}/fcgiwrap.sock"],
                                     start_new_session=True)
        conf = work / "nginx.conf"
        # as root, nginx's workers would drop to nobody, who cannot reach the socket in a 0700 tmp
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(work=work, port=self.port, backend=backend, root=root,
                                          user=user))
        self.nginx = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)],
                                      start_new_session=True)
        deadline = time.monotonic() + 10
        while not (work / "fcgiwrap.sock").exists() or not (work / "nginx.pid").exists():
            if time.monotonic() > deadline:
                raise SystemExit("nginx/fcgiwrap did not start: "
                                 + (work / "nginx-error.log").read_text())
            time.sleep(0.05)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        for proc in (self.nginx, self.fcgi):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(10)


def timed_clone(url: str, dest: Path, protocol: str = "2") -> float:
    shutil.rmtree(dest, ignore_errors=True)
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
    t0 = time.perf_counter()
    subprocess.run(["git", "-c", f"protocol.version={protocol}", "clone", "-q", "--bare", url,
                    str(dest)],
                   env=env, check=True, timeout=1800)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default="large", choices=sorted(repogen.SPECS))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--protocol", default="2", choices=("0", "1", "2"))
    args = p.parse_args(argv)

    from tests.support.httpkit import make_http_server

    work = Path(tempfile.mkdtemp(prefix="http-clonebench-"))
    backend = srv = None
    try:
        source = repogen.ensure(args.repo)
        root = work / "repos"
        root.mkdir()
        repogen.copy_repo(source, root / "bench.git")
        print(f"repo {args.repo}: {repogen.count_objects(root / 'bench.git')} objects, "
              f"pack {sum(f.stat().st_size for f in (root / 'bench.git/objects/pack').glob('*.pack')) >> 20} MiB")
        srv = make_http_server(work / "gitserve",
                               conf="repo bench\n    RW+ = admin\n    R = daemon\n")
        shutil.rmtree(srv.repo_path("bench"))
        repogen.copy_repo(source, srv.repo_path("bench"))
        backend = HttpBackend(work / "nginx", root)
        urls = {"http-backend": backend.url("bench.git"),
                "gitserve": f"{srv.http_base}/bench.git"}  # type: ignore[attr-defined]
        runs: dict[str, list[float]] = {name: [] for name in urls}
        # warm caches (page cache, pack cache)
        timed_clone(urls["gitserve"], work / "warm", args.protocol)
        timed_clone(urls["http-backend"], work / "warm", args.protocol)
        for i in range(args.runs):
            order = list(urls.items())
            for name, url in order if i % 2 == 0 else reversed(order):
                runs[name].append(timed_clone(url, work / f"clone-{name}", args.protocol))
        print("| server | median s | runs |\n|---|---|---|")
        for name, values in runs.items():
            print(f"| {name} | {statistics.median(values):.2f} | "
                  + " ".join(f"{v:.2f}" for v in values) + " |")
        ratio = statistics.median(runs["gitserve"]) / statistics.median(runs["http-backend"])
        print(f"gitserve/http-backend: {ratio:.2f}x (target <= 1.2x), protocol v{args.protocol}")
    finally:
        if backend:
            backend.stop()
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
