"""Gitolite-compatible mirroring between gitserve servers (SPEC §10).

One master per repository pushes every ref change to its slaves; slaves serve reads and
forward (redirectOK) or refuse pushes; peers authenticate with keydir/server-NAME.pub keys.

    config.py     `option mirror.*` of one repo -> RepoMirror (mode, slaves, redirectOK, sync);
                  [mirror] peers -> Peer addresses
    gate.py       Gitolite's pre_git decisions: who may push or read here, with its messages
    state.py      what each repo's files say: seq, last state pushed to each slave, status
    transport.py  git push / git fetch / ssh to a peer with HOME/server_key (system OpenSSH)
    syncer.py     the background queue per slave, catch-up, mirror.sync waits; MirrorHook
    peercmds.py   what a peer may run here (meta, state; Gitolite's `CREATOR=.. perms -c`)
    proxy.py      a redirected push piped to the master
    promote.py    `gitserve mirror promote`: this slave becomes the master
"""
