"""Admin-repo costs: `adminrepo.current()` per connection, reload after a new tip, add-key.

    python -m tests.bench.bench_admin [N_KEYS]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gitserve import adminrepo
from gitserve.cli.init import init_home
from gitserve.settings import Settings


def keygen(d: Path, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(d / name)],
                   check=True)
    return (d / f"{name}.pub").read_text()


def main(n_keys: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        keygen(t, "alice")
        init_home(t / "home", "alice", t / "alice.pub", author="bench")
        s = Settings(home=t / "home")
        pubs = [keygen(t, f"u{i}") for i in range(n_keys)]
        t0 = time.perf_counter()
        for i, pub in enumerate(pubs):
            adminrepo.add_key(s, f"u{i}", pub, "bench")
        add = (time.perf_counter() - t0) / n_keys
        adminrepo.forget()
        adminrepo.clear_caches()
        t0 = time.perf_counter()
        adminrepo.current(s)
        cold = time.perf_counter() - t0
        adminrepo.add_key(s, "late", keygen(t, "late"), "bench")  # a new tip: one key changed
        t0 = time.perf_counter()
        state = adminrepo.current(s)
        reload = time.perf_counter() - t0
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            adminrepo.current(s)
        hot = (time.perf_counter() - t0) / n
        blob = state.keys[-1].key.blob
        t0 = time.perf_counter()
        for _ in range(n):
            state.user_for_key(blob)
        lookup = (time.perf_counter() - t0) / n
        print(f"keys in keydir:                 {len(state.keys)}")
        print(f"add_key (validate+commit+CAS):  {add * 1e3:.1f} ms per key (avg over {n_keys})")
        print(f"current() first load (cold):    {cold * 1e3:.1f} ms")
        print(f"current() after a new tip:      {reload * 1e3:.1f} ms (one key added)")
        print(f"current() unchanged tip:        {hot * 1e6:.1f} us per call")
        print(f"user_for_key():                 {lookup * 1e6:.2f} us per call")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
