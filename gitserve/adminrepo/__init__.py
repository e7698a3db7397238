"""The admin repo (HOME/repositories/gitolite-admin.git): the single source of truth.

Access rules and keys are read from the tip of the admin repo's branch `master` (Gitolite's,
so an existing gitolite-admin clone keeps fetching and pushing it), never from files beside
it, so every change - a push, `admin add-key`, `set-conf` - is a commit and the history
says who changed what. Four parts, one job each:

- tree.py     an admin tree -> rules and keys, or a one-line refusal (pure; also validates pushes)
- state.py    the read model: `current()` reads `refs/heads/master` only (never HEAD), cached
              by tip; it never writes
- writer.py   admin commands and init: one commit on master by compare-and-swap
- compile.py  after a new tip: create the repos the conf names, repo configs, authorized_keys
- migrate.py  once at start: an older home's admin branch (HEAD's `main`) moved to master
"""

from .commits import make_commit
from .compile import compile, sync_authorized_keys  # noqa: A004 - Gitolite's word
from .migrate import migrate_branch
from .state import AdminState, current, forget, read_master, repo_options
from .tree import (ADMIN_BRANCH, BUILDER, CONF_DIR, KEYDIR, MAIN_CONF, AdminError, KeyEntry,
                   build, clear_caches, keydir_entries, load_rules, not_applied_note,
                   option_problems, tree_files, validate_commit)
from .writer import add_key, commit_files, create_admin_repo, remove_key, set_conf

__all__ = [
    "ADMIN_BRANCH", "BUILDER", "CONF_DIR", "KEYDIR", "MAIN_CONF", "AdminError", "AdminState",
    "KeyEntry", "add_key", "build", "clear_caches", "commit_files", "compile",
    "create_admin_repo", "current", "forget", "keydir_entries", "load_rules", "make_commit",
    "migrate_branch", "not_applied_note", "option_problems", "read_master", "remove_key",
    "repo_options", "set_conf", "sync_authorized_keys", "tree_files", "validate_commit",
]
