"""`gitserve admin ...`: the command groups of each concern, added here in one place."""

from __future__ import annotations

import typer

from . import admin_acl, admin_authkeys, admin_keys, admin_lfs, admin_secrets, admin_upkeep
from . import mirror as mirror_cli

app = typer.Typer(help="Manage keys, access rules and secrets (commits on the admin repo).",
                  no_args_is_help=True)

# what `admin check` runs, in this order (`init --from-gitolite` runs the same before it
# puts the new home in place)
CHECKS = (admin_acl.validate_conf, admin_acl.validate_options, admin_keys.validate_keydir)

admin_acl.add_commands(app, validators=CHECKS)  # access, check
admin_keys.add_commands(app)     # add-key, remove-key, list-keys, set-conf
admin_secrets.add_commands(app)  # set-secret, secrets list|set|remove, notify-log
admin_upkeep.add_commands(app)   # fsck, gc
admin_authkeys.add_commands(app)  # authorized-keys (behind the system OpenSSH)
admin_lfs.add_commands(app)      # lfs-gc
mirror_cli.add_admin_commands(app)  # server-key (mirroring: keydir/server-NAME.pub)
