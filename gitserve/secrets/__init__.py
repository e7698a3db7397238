"""Secrets: the server's store (file or Vault), the Fernet tokens builds carry, masking.

None of it needs Redis: `store.py` is the server's one door to a repo's secrets (the file
store HOME/secrets, or `vault.py`), `crypt.py` the encryption with secrets.key that lets a
job carry tokens instead of values, `masker.py` what keeps values out of logs and mail, and
`sshcommand.py` the admins' `secrets` ssh command. buildqueue uses them; they import
nothing of buildqueue.
"""
