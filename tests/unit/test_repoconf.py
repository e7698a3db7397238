"""Which conf `config` keys gitserve writes into repos ([server] git_config_keys)."""

from __future__ import annotations

import re

import pytest

from gitserve import repoconf


@pytest.mark.parametrize("key", [
    "core.hooksPath", "core.sshCommand", "CORE.FSMONITOR", "core.pager", "core.editor",
    "include.path", "includeIf.gitdir:/x.path", "alias.st", "filter.lfs.smudge",
    "diff.x.textconv", "merge.x.driver", "credential.helper", "gpg.program",
    "uploadpack.packObjectsHook", "remote.origin.uploadpack", "mergetool.x.cmd",
    "sequence.editor", "core.worktree",
])
def test_program_keys_are_never_allowed(key):
    everything = [re.compile(".*", re.IGNORECASE)]
    assert repoconf.is_dangerous(key)
    assert not repoconf.key_allowed(key, everything)


@pytest.mark.parametrize("key", ["gitweb.owner", "hooks.mailinglist", "receive.denyNonFastForwards",
                                 "core.sharedRepository", "foo.bar.baz"])
def test_plain_keys_follow_the_setting(key):
    assert not repoconf.key_allowed(key, [])  # none by default, as Gitolite's GIT_CONFIG_KEYS
    assert repoconf.key_allowed(key, [re.compile(".*", re.IGNORECASE)])
    # whole-key matches only, ignoring case
    assert not repoconf.key_allowed(key, [re.compile(key[:-1], re.IGNORECASE)])
    assert repoconf.key_allowed(key, [re.compile(key.upper(), re.IGNORECASE)])
