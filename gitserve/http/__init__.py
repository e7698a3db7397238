"""The HTTP face (SPEC §9): smart HTTP git, the web UI, /metrics and /healthz on one port.

Modules, one job each: `app` (routes, security headers), `service` (uvicorn in a thread of
`gitserve serve`), `smart` (git over HTTP), `auth` (client address, basic auth, failure
limit), `tokens` (hashed personal access tokens), `logins` (one-time links, session
cookie), `ui` (pages), `metrics` (what /metrics and /healthz read from Redis and disk),
`sshcommands` (`token` and `login` over ssh). Like gitserve/cli this is a top layer: it may
use buildqueue and deploy; nothing in gitserve's core imports it.
"""
