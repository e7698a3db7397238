"""`gitserve admin ...`: each concern registers its own commands on this group."""

from __future__ import annotations

import typer

from . import admin_acl, admin_authkeys, admin_keys, admin_secrets, admin_upkeep

app = typer.Typer(help="Manage keys, access rules and secrets (commits on the admin repo).",
                  no_args_is_help=True)

admin_acl.register(app)      # access, check
admin_keys.register(app)     # add-key, remove-key, list-keys, set-conf
admin_secrets.register(app)  # set-secret, secrets list|set|remove, notify-log
admin_upkeep.register(app)   # fsck, gc
admin_authkeys.register(app)  # authorized-keys (behind the system OpenSSH)
