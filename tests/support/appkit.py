"""The seed's shape as a tiny app (SPEC §7.1 tests): a `web` process serving pages that
name their version, side and port, and a `search` process whose index deploy.post loads
(the seed's search-index upload) and which answers /api/search?q=WORD. Plain python3
http.server scripts: what a user of Dokku or piku would push first."""

from __future__ import annotations

from pathlib import Path

WEB = r'''
import os, sys, time, urllib.parse
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

VERSION = open("version.txt").read().strip()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path.startswith("/slow"):  # a request that holds its side for S seconds
            seconds = float(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["s"][0])
            print(f"slow request begun ({seconds}s)", flush=True)
            time.sleep(seconds)
        if self.path == "/health" and os.path.exists("unhealthy"):
            body, code = b"unhealthy\n", 500
        else:
            body = (f"{VERSION} side={os.environ['SIDE']} port={os.environ['PORT']} "
                    f"release={os.environ['RELEASE']} site={os.environ['SITE']} "
                    f"secret={'set' if os.environ.get('API_TOKEN') else 'unset'}\n").encode()
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

print(f"web {VERSION} listening on {os.environ['PORT']} token {os.environ.get('API_TOKEN', '')}", flush=True)
ThreadingHTTPServer.request_queue_size = 128  # listen backlog: see README (http.server's is 5)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''

SEARCH = r'''
import json, os, urllib.parse
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

INDEX = []

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _send(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        INDEX[:] = data.decode().split()
        self._send(200, {"indexed": len(INDEX), "side": os.environ["SIDE"]})
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("q", [""])[0]
        self._send(200, {"q": q, "hits": [w for w in INDEX if q and q in w], "side": os.environ["SIDE"]})

print(f"search listening on {os.environ['PORT']}", flush=True)
ThreadingHTTPServer.request_queue_size = 128
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'''

PROCFILE = "web: python3 web.py\nsearch: python3 search.py\n"

# the seed's post-deploy step: load the search index into the new live side's search API
POST = r'''#!/bin/sh
set -e
echo "post: LIVE_SIDE=$LIVE_SIDE IDLE_SIDE=$IDLE_SIDE SITE=$SITE PORT_WEB=$PORT_WEB PORT_SEARCH=$PORT_SEARCH"
python3 - <<PY
import urllib.request
req = urllib.request.Request("http://127.0.0.1:$PORT_SEARCH/index", data=b"alpha beta gamma $LIVE_SIDE", method="POST")
print(urllib.request.urlopen(req, timeout=5).read().decode().strip())
PY
'''


def write_app(root: Path, version: str, unhealthy: bool = False, procfile: str = PROCFILE) -> Path:
    """The app's release files in ROOT (a build output, or a repo's site/ folder)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "web.py").write_text(WEB)
    (root / "search.py").write_text(SEARCH)
    (root / "Procfile").write_text(procfile)
    (root / "version.txt").write_text(version + "\n")
    marker = root / "unhealthy"
    if unhealthy:
        marker.write_text("1\n")
    elif marker.exists():
        marker.unlink()
    return root
