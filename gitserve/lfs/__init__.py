"""Git LFS (SPEC §11): objects stored content-addressed per repository, the batch and locks
APIs over HTTP, and git-lfs 3's pure SSH protocol (`git-lfs-transfer`).

Layout: HOME/lfs/REPO.git/objects/aa/bb/OID (dulwich's LFSStore and git-lfs's own local layout,
so dulwich's `LFSStore(path)` reads it), HOME/lfs/REPO.git/tmp for uploads in flight and
HOME/lfs/REPO.git/locks.json. One store per repository rather than one shared store: whether an
object exists is then never observable from another repository (a shared store answers "already
have it" for content a user cannot read), each repository's gc walks only its own refs,
deleting or trashing a repository takes its objects along, and a mirror copies exactly one
directory. The price is no deduplication across forks (`fork` hard-links instead).

Modules: store.py (streamed, sha256-checked writes), locks.py (the lock table), access.py
(what a user may do, from the Gitolite rules), batch.py (the transport-neutral batch and
verify decisions), transfer.py (the pure SSH protocol), pushcheck.py (a push touching a path
somebody else locked is refused), gc.py (`gitserve admin lfs-gc`).
"""
