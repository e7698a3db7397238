"""Debian's gitolite3 as the oracle: a private gitolite install in a temp HOME.

One `Gitolite` per test session (setup costs ~1.5 s); `load()` resets it to a given conf:
every repo except gitolite-admin and testing is removed, the conf files are written and
`gitolite compile` runs, so each conf starts from the same state as ours does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

LIBDIR = "/usr/share/gitolite3/lib"
BASE_REPOS = ("gitolite-admin", "testing")

# Asks Gitolite's own access() (the function `gitolite access` calls) many questions in one
# process: stdin lines "repo TAB user TAB perm TAB ref", answers in order. The perm
# adjustment is the one `gitolite access` applies (C/D/M read as W/+ unless enabled).
DRIVER = r"""
use strict; use warnings;
use lib $ENV{GL_LIBDIR};
use Gitolite::Rc; use Gitolite::Common; use Gitolite::Conf::Load;
$| = 1;
$SIG{__WARN__} = sub {};
while (my $line = <STDIN>) {
    chomp $line;
    my ($r, $u, $aa, $ref) = split /\t/, $line, -1;
    $ref = "refs/heads/$ref" if $ref ne 'any' and $ref !~ m(^(refs|VREF)/);
    my $ret = eval {
        $aa = 'W' if $aa eq 'C' and not option($r, 'CREATE_IS_C');
        $aa = '+' if $aa eq 'D' and not option($r, 'DELETE_IS_D');
        $aa = 'W' if $aa eq 'M' and not option($r, 'MERGE_CHECK');
        my $x = access($r, $u, $aa, $ref);
        $x =~ s/DENIED by fallthru/allowed by fallthru/ if $ref =~ m(^VREF/);
        $x;
    };
    if (!defined $ret) { my $e = $@; $e =~ s/\n.*//s; $ret = $e; }
    print "$ret\n";
}
"""


class Gitolite:
    def __init__(self, root: Path) -> None:
        self.home = Path(root) / "glhome"
        self.home.mkdir(parents=True)
        env = self.env()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.home / "admin")], check=True, env=env, timeout=30,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["gitolite", "setup", "-pk", str(self.home / "admin.pub")], check=True,
                       env=env, timeout=60, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        # gitserve takes every `config` key (no rc file); let the oracle do the same
        rc = self.home / ".gitolite.rc"
        text = rc.read_text().replace("GIT_CONFIG_KEYS                 =>  ''",
                                      "GIT_CONFIG_KEYS                 =>  '.*'")
        # triggers that write authorized_keys, git configs, daemon/gitweb lists: they never
        # change a decision and make each compile several times slower
        for feature in ("ssh-authkeys", "git-config", "daemon", "gitweb"):
            text = text.replace(f"'{feature}',", f"# '{feature}',")
        rc.write_text(text)
        self.conf_dir = self.home / ".gitolite" / "conf"
        self.repo_base = self.home / "repositories"
        self.driver = self.home / "driver.pl"
        self.driver.write_text(DRIVER)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
        env.update(HOME=str(self.home), GL_LIBDIR=LIBDIR, GL_BINDIR="/usr/share/gitolite3",
                   LC_ALL="C")
        env.update(extra)
        return env

    def run(self, args: list[str], stdin: str = "", **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, input=stdin, capture_output=True, text=True,
                              env=self.env(**env), timeout=120, cwd=str(self.home))

    def load(self, files: dict[str, str]) -> subprocess.CompletedProcess:
        """Make FILES (relative to conf/) the whole conf and compile it."""
        for entry in self.repo_base.iterdir():
            if entry.name.removesuffix(".git") not in BASE_REPOS:
                shutil.rmtree(entry)
        for entry in self.conf_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.suffix == ".conf" or entry.name.endswith(".conf"):
                entry.unlink()
        for name, text in files.items():
            path = self.conf_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return self.run(["gitolite", "compile"])

    def existing(self) -> set[str]:
        out = set()
        for p in self.repo_base.rglob("*.git"):
            out.add(str(p.relative_to(self.repo_base))[:-4])
        return out

    def create_wild(self, repo: str, user: str, roles: dict[str, list[str]] | None = None) -> None:
        r = self.run(["gitolite", "create", repo], GL_USER=user)
        assert r.returncode == 0, r.stderr
        if roles:
            (self.repo_base / f"{repo}.git" / "gl-perms").write_text(
                "".join(f"{k} {' '.join(v)}\n" for k, v in roles.items()))

    def ask(self, queries: list[tuple[str, str, str, str]], gl_user: str = "") -> list[str]:
        """Gitolite's answer to each (repo, user, perm, ref), in one perl process."""
        stdin = "".join("\t".join(q) + "\n" for q in queries)
        extra = {"GL_USER": gl_user} if gl_user else {}
        r = self.run(["perl", str(self.driver)], stdin=stdin, **extra)
        lines = r.stdout.split("\n")[:-1]
        assert len(lines) == len(queries), (r.stdout, r.stderr)
        return lines

    def access(self, *args: str, stdin: str = "", gl_user: str = "") -> subprocess.CompletedProcess:
        extra = {"GL_USER": gl_user} if gl_user else {}
        return self.run(["gitolite", "access", *args], stdin=stdin, **extra)

    def info(self, user: str) -> str:
        r = self.run(["gitolite", "info"], GL_USER=user)
        assert r.returncode == 0, r.stderr
        return r.stdout


def plant_wild(g: Gitolite, repo: str, creator: str, roles: dict[str, list[str]]) -> None:
    """A wild repo as `gitolite create` + `perms` leave it (bare repo, gitolite's update hook,
    gl-creator, gl-perms), without the slow POST_CREATE triggers that decisions never read."""
    path = g.repo_base / f"{repo}.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, timeout=30,
                   capture_output=True)
    hook = path / "hooks" / "update"
    if hook.exists() or hook.is_symlink():
        hook.unlink()
    hook.symlink_to(g.home / ".gitolite" / "hooks" / "common" / "update")
    (path / "gl-creator").write_text(creator)
    if roles:
        (path / "gl-perms").write_text("".join(f"{k} {' '.join(v)}\n" for k, v in roles.items()))
