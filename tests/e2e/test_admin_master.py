"""gitolite-admin on `master` with the real git client: only master is applied (SPEC §2)."""

from __future__ import annotations

import subprocess


def test_admin_clone_is_on_master_and_other_branches_are_stored_not_applied(gitserve_server):
    srv = gitserve_server
    work = srv.clone("admin", "gitolite-admin")
    assert srv.git("admin", "symbolic-ref", "HEAD", cwd=work).stdout.strip() == "refs/heads/master"
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo on-a-branch\n    RW+ = admin\n")
    srv.git("admin", "commit", "-q", "-am", "try on a branch", cwd=work)

    push = srv.git("admin", "push", "origin", "HEAD:wip", cwd=work)
    notes = [line.rstrip() for line in push.stderr.splitlines() if "not applied" in line]
    assert notes == [("remote: NOTE: gitolite-admin: wip stored but not applied; "
                      "only master is applied (git push origin HEAD:master)")], push.stderr
    assert not srv.repo_path("on-a-branch").exists()
    assert "refs/heads/wip" in srv.git("admin", "ls-remote", srv.url("gitolite-admin")).stdout

    push = srv.git("admin", "push", "origin", "master", cwd=work)
    assert "Initialized empty Git repository in " in push.stderr and "/on-a-branch.git/" in push.stderr
    assert "not applied" not in push.stderr
    srv.clone("admin", "on-a-branch")


def test_a_home_made_on_main_moves_to_master_on_serve(gitserve_factory):
    srv = gitserve_factory()
    srv.stop()
    git_dir = str(srv.home / "repositories" / "gitolite-admin.git")
    subprocess.run(["git", "--git-dir", git_dir, "branch", "-m", "master", "main"], check=True)
    subprocess.run(["git", "--git-dir", git_dir, "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    (srv.home / "repositories" / "gitolite-admin.git" / "gitserve-admin-branch").unlink()  # not in old homes
    old = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "main"], check=True,
                         capture_output=True, text=True).stdout.strip()
    srv.output.clear()
    srv.start()
    assert any("the admin branch is now master (main moved into it" in line
               for line in srv.output), srv.output
    refs = srv.git("admin", "ls-remote", srv.url("gitolite-admin")).stdout.split("\n")
    assert f"{old}\tHEAD" in refs and f"{old}\trefs/heads/master" in refs
    assert not any(r.endswith("refs/heads/main") for r in refs)
    # and an admin push to master is applied
    work = srv.clone("admin", "gitolite-admin")
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo after-move\n    RW+ = admin\n")
    srv.git("admin", "commit", "-q", "-am", "after the move", cwd=work)
    pushed = srv.git("admin", "push", "origin", "master", cwd=work).stderr
    assert "Initialized empty Git repository in " in pushed and "/after-move.git/" in pushed
