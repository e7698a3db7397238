"""Sites on several web hosts (SPEC §7.1), measured with the real thing: one server, two
`gitserve deploy-agent`s on 127.0.0.1 behind an nginx upstream (tests/cluster/
test_deploy_agents.py's cluster), a Procfile app deployed ROUNDS times and rolled back, with a
client every 20 ms through the upstream:

- push: `git push` until it returned (build, both hosts' phase one, the switches);
- deploy: the coordinator's whole deploy (record's `seconds`);
- skew: how far apart in wall-clock time the two hosts switched;
- failed requests during all of it.

    python3 -m tests.bench.deploy_agents [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.cluster.test_deploy_agents import Poller, commit_push, start_cluster, status_json, stop_cluster


def _stats(values: list[float], unit: str = "ms") -> str:
    return (f"median {statistics.median(values):.1f} {unit}, min {min(values):.1f}, "
            f"max {max(values):.1f} (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    root = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    root.chmod(0o755)  # nginx workers (nobody) must reach the agents' homes
    c = start_cluster(root)
    pushes, deploys, skews, rollbacks, rskews = [], [], [], [], []
    try:
        assert commit_push(c, "v0")[0] == 0
        with Poller(c["upstream"].port) as poll:
            for i in range(rounds):
                code, msgs, seconds = commit_push(c, f"v{i + 1}")
                assert code == 0 and any(m.startswith("Enable:") for m in msgs), msgs
                last = status_json(c)["last"]
                pushes.append(seconds * 1000)
                deploys.append(float(last["seconds"]) * 1000)
                skews.append(float(last["skew_ms"]))
            for _ in range(2):
                out = c["srv"].ssh("alice", "deploy", "rollback", "app")
                assert out.returncode == 0, out.stderr
                last = status_json(c)["last"]
                rollbacks.append(float(last["seconds"]) * 1000)
                rskews.append(float(last["skew_ms"]))
        print(f"push (build + 2 hosts' phase one + switches): {_stats(pushes)}")
        print(f"deploy on 2 hosts (coordinator):              {_stats(deploys)}")
        print(f"switch skew between the hosts:                {_stats(skews)}")
        print(f"rollback on 2 hosts:                          {_stats(rollbacks)}, skew {_stats(rskews)}")
        print(f"requests every 20 ms through the upstream:    {len(poll.ok)} served, {len(poll.failed)} failed")
    finally:
        stop_cluster(c)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
