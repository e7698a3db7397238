"""Bad confs: the same fatal error and warnings as `gitolite compile`, plus file:line.

Gitolite prints `FATAL: msg` / `WARNING: msg` without saying where; we must say the same
thing and add the file and line, and a conf that fails never yields usable rules.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gitserve import acl

from .cases import ADMIN

# (conf files, file:line where the fatal error is, or None when the conf only warns)
BAD = [
    ({"gitolite.conf": ADMIN + "repo foo\n    RW = a%b\n"}, "conf/gitolite.conf:6"),
    ({"gitolite.conf": ADMIN + "repo fo%o\n    RW = a\n"}, "conf/gitolite.conf:5"),
    ({"gitolite.conf": ADMIN + "@g% = a\n"}, "conf/gitolite.conf:5"),
    ({"gitolite.conf": ADMIN + "@g = a b%\n"}, "conf/gitolite.conf:5"),
    ({"gitolite.conf": ADMIN + "@g = @nosuch\n"}, "conf/gitolite.conf:5"),
    ({"gitolite.conf": ADMIN + "repo foo\n    RW @nosuch = u1\n"}, "conf/gitolite.conf:6"),
    ({"gitolite.conf": ADMIN + "repo foo\n    RW ma%ster = u1\n"}, "conf/gitolite.conf:6"),
    ({"gitolite.conf": ADMIN + "include sub.conf\n"}, "conf/gitolite.conf:5"),
    ({"gitolite.conf": ADMIN + "repo foo\n    config a.b = x;rm\n"}, "conf/gitolite.conf:6"),
    ({"gitolite.conf": ADMIN + "# c\n\ninclude \"sub/*.conf\"\n",
      "sub/a.conf": "repo x\n    RW = ok\n",
      "sub/b.conf": "\n# comment\nrepo y\n  RW+ = bad!user\n"}, "conf/sub/b.conf:4"),
    ({"gitolite.conf": ADMIN + "include \"sub.confx\"\n", "sub.confx": "repo a\n"},
     "conf/gitolite.conf:5"),
    # warnings only
    ({"gitolite.conf": ADMIN + "repo foo\n    RW = @undef u1\nthis is junk\n"}, None),
    ({"gitolite.conf": ADMIN + "repo foo.git\n    R master = u1\n"}, None),
    ({"gitolite.conf": ADMIN + 'include "a.conf"\ninclude "a.conf"\ninclude "gitolite.conf"\n'
                               'include "none.conf"\n', "a.conf": "repo a\n    RW = u\n"}, None),
    ({"gitolite.conf": ADMIN + "repo foo\n    RW = u1\n= begin testconf\nrepo zz\n  R = x\n"
                               "= end\n    option = x\n"}, None),
    ({"gitolite.conf": ADMIN + "@team1 = t1a\n@team2 = t2a\nsubconf \"teams/*.conf\"\n",
      "teams/team1.conf": "@devs = d1\nrepo t1a t2a other\n    RW+ = @devs\nrepo @team2\n"
                          "    R = x\n",
      "teams/team2.conf": "repo @team2\n  RW = y\n"}, None),
    ({"gitolite.conf": ADMIN + "subconf \"t/*.conf\"\n", "t/a.conf": "subconf \"b.conf\"\n",
      "b.conf": "repo b\n"}, "conf/t/a.conf:1"),
]


def _messages(stderr: str, kind: str) -> list[str]:
    return [line[len(kind) + 2:] for line in stderr.splitlines() if line.startswith(kind + ": ")]


def _strip_where(msg: str) -> str:
    return re.sub(r"^conf/[^:]+:\d+: ", "", msg)


@pytest.mark.parametrize("files,where", BAD, ids=[str(i) for i in range(len(BAD))])
def test_errors_and_warnings_match_gitolite(gitolite, files, where):
    r = gitolite.load(files)
    fatal = _messages(r.stderr, "FATAL")
    warnings = _messages(r.stderr, "WARNING")
    try:
        rules = acl.load_files(files)
    except acl.ConfError as exc:
        assert where is not None, f"unexpected error {exc}"
        assert fatal, f"gitolite accepted what we refused: {exc}\n{r.stderr}"
        assert str(exc) == f"{where}: {fatal[0]}" or (
            exc.message.startswith("invalid include") and fatal[0].startswith("invalid include")
        ), (str(exc), fatal)
        return
    assert where is None and not fatal, (fatal, r.stderr)
    ours = sorted(_strip_where(w) for w in rules.warnings)
    assert ours == sorted(warnings)
    assert all(re.match(r"^conf/[^:]+:\d+: ", w) for w in rules.warnings)


def test_bad_refex_regex_is_refused_at_load():
    # gitolite would only die when a push reaches the rule; we refuse the conf up front
    with pytest.raises(acl.ConfError) as exc:
        acl.load_files({"gitolite.conf": "repo foo\n    RW ma(ster = u1\n"})
    assert str(exc.value).startswith("conf/gitolite.conf:2: bad refex 'refs/heads/ma(ster'")


def test_error_in_last_include_fails_whole_conf(tmp_path: Path):
    conf = tmp_path / "conf"
    (conf / "more").mkdir(parents=True)
    (conf / "gitolite.conf").write_text('repo a\n    RW+ = u1\ninclude "more/*.conf"\n')
    (conf / "more" / "z.conf").write_text("repo b\n    RW = u 2\n    RW = u%\n")
    good = acl.load_files({"gitolite.conf": "repo a\n    R = u1\n"})
    with pytest.raises(acl.ConfError) as exc:
        acl.load(conf / "gitolite.conf")
    assert str(exc.value) == "conf/more/z.conf:3: bad username 'u%'"
    # nothing of the failed conf leaks into rules loaded before
    assert not good.check("a", "u1", "W").allowed
    assert good.check("a", "u1", "R").allowed


def test_dir_and_mapping_sources_agree(tmp_path: Path):
    files = {
        "gitolite.conf": 'include "teams/{b,a}.conf"\ninclude "x/*.conf"\nrepo r\n  R = @t\n',
        "teams/a.conf": "@t = ua\n",
        "teams/b.conf": "@t = ub\n",
        "x/1.conf": "repo r\n  RW = ua\n",
        "x/.hidden.conf": "repo r\n  RW+ = ub\n",
    }
    conf = tmp_path / "conf"
    for name, text in files.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(text)
    a = acl.load(conf / "gitolite.conf")
    b = acl.load_files(files)
    assert a.compiled.repos == b.compiled.repos
    assert a.compiled.groups == b.compiled.groups
    assert not b.check("r", "ub", "+").allowed  # hidden files are not globbed
    assert list(b.compiled.groups["@t"]) == ["ub", "ua"]  # brace order is kept


def test_missing_main_conf(tmp_path: Path):
    with pytest.raises(acl.ConfError) as exc:
        acl.load(tmp_path / "conf" / "gitolite.conf")
    assert str(exc.value).startswith("conf/gitolite.conf: cannot read")


@pytest.mark.parametrize("target", ["../secret.conf", "/etc/*.conf", "sub/../../secret.conf",
                                    "link/x.conf"])
def test_includes_stay_inside_conf(tmp_path: Path, target: str):
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "secret.conf").write_text("repo s\n    RW+ = mallory\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.conf").write_text("repo s\n    RW+ = mallory\n")
    (conf / "link").symlink_to(tmp_path / "outside")
    (conf / "gitolite.conf").write_text(f'repo a\n    R = u\ninclude "{target}"\n')
    with pytest.raises(acl.ConfError) as exc:
        acl.load(conf / "gitolite.conf")
    assert str(exc.value).startswith(
        "conf/gitolite.conf:3: include outside the conf directory refused: ")
    if not target.startswith("/") and not target.startswith("link"):
        with pytest.raises(acl.ConfError):
            acl.load_files({"gitolite.conf": f'include "{target}"\n', "x.conf": ""})
