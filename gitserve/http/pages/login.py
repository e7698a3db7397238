"""Logging in and out: the one-time link `ssh git@HOST login` prints (`/login/NONCE`, a
confirmation page, then a POST that uses the link up and sets the session cookie) and
`/logout`. Both POSTs refuse cross-site requests; logout also needs the CSRF token."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gitserve import audit

from ..logins import COOKIE, LoginLinks, Sessions, csrf_ok
from .base import Pages, same_origin, ssh_command, visitor


class LoginPages:
    def __init__(self, pages: Pages, links: LoginLinks, sessions: Sessions) -> None:
        self.pages = pages
        self.settings = pages.settings
        self.links = links
        self.sessions = sessions

    def login_page(self, request: Request) -> Response:
        v = visitor(request)
        nonce = request.path_params["nonce"]
        user = self.links.peek(nonce)
        if user is None:
            return self.pages.message(v, "Login link not valid", "This link was used already, "
                                      "has expired (links last 5 minutes) or is mistyped. Run "
                                      f"`{ssh_command(self.settings)} login` again.",
                                      400)
        return self.pages.page("login.html", v, login_user=user, nonce=nonce)

    async def login(self, request: Request) -> Response:
        if not same_origin(request):  # login CSRF: no logging a victim in as someone else
            return self.pages.message(visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        return await anyio.to_thread.run_sync(self._login, request, str(form.get("nonce", "")))

    def _login(self, request: Request, nonce: str) -> Response:
        v = visitor(request)
        user = self.links.consume(nonce) if nonce else None
        if user is None:
            return self.pages.message(v, "Login link not valid", "This link was used already "
                                      "or has expired. Run "
                                      f"`{ssh_command(self.settings)} login` again.", 400)
        cookie, _session = self.sessions.issue(user)
        audit.record(self.settings, user=user, ip=v.client.ip, op="web login", result="allowed")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=self.sessions.max_age, path="/",
                            httponly=True, samesite="lax", secure=v.client.https)
        return response

    async def logout(self, request: Request) -> Response:
        if not same_origin(request):
            return self.pages.message(visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        v = visitor(request)
        if not csrf_ok(v.session, str(form.get("csrf", ""))):
            return self.pages.message(v, "Forbidden", "Missing or wrong form token.", 403)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                               secure=v.client.https)
        return response
