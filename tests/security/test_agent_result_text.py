"""A compromised web host answers its deploy jobs with a valid signature (it holds its own
agent key) but hostile text: escape sequences that would clear the pusher's screen or set
the terminal's title, a carriage return that overwrites a line with a fake `Enable:`, a
`live_side` that is an escape sequence, a `switched_at` that is not a number. The
coordinator relays what an agent says to the pusher (`[host] line`) and into the Enable
line: every character of it must arrive printable, and nothing it sends crashes the deploy.
(Before: the lines were relayed as sent.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rq import Queue
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from deploy.agents import auth, status_key
from deploy.agents.coordinator import Coordinator
from gitserve.settings import Settings

ESC = "\x1b"
HOSTILE_LINES = [f"{ESC}[2J{ESC}[H{ESC}]0;owned\x07cleared your screen",
                 "deploy ok\rEnable: green",
                 "\x9b31mC1 CSI\x00nul"]


def _compromised_agent(r, key: bytes, host: str) -> None:
    """Take the job the coordinator sent HOST and answer it, signed, with hostile text."""
    queue = Queue(f"deploy-agent:{host}", connection=r, serializer=JSONSerializer)
    deadline = time.monotonic() + 5
    while not (ids := queue.job_ids):
        assert time.monotonic() < deadline, "no job was sent"
        time.sleep(0.01)
    job = Job.fetch(ids[0], connection=r, serializer=JSONSerializer)
    body = {"ok": False, "agent": host, "nonce": job.id.rsplit("-", 1)[1],
            "reason": f"{ESC}[31mfailed\rinjected", "lines": HOSTILE_LINES,
            "live_side": f"{ESC}[8mgreen", "switched_at": "not a number"}
    Result.create(job, Result.Type.SUCCESSFUL, ttl=60, return_value=auth.seal(key, "result", body))
    job.set_status(JobStatus.FINISHED)


def test_a_signed_answer_reaches_the_pusher_without_control_characters(redis_server, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.deploy.agent_timeout = 5.0
    r = redis_server.client()
    key = auth.ensure_server_key(settings, "web1")
    r.set(status_key("web1"), json.dumps(auth.seal(key, "status", {"agent": "web1", "at": time.time(),
                                                                     "sites": {}})), ex=30)
    agent = threading.Thread(target=_compromised_agent, args=(r, key, "web1"))
    agent.start()
    said: list[str] = []
    out = Coordinator(r).run_phase(settings, ["web1"], "abort",
                                   lambda h: {"site": "www", "release": "7"}, 60, said.append)
    agent.join()
    answer = out["web1"]
    shown = said + [answer["reason"], answer["live_side"]]
    assert len(said) == len(HOSTILE_LINES), said
    for text in shown:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)
    assert said[0] == "[web1] \\x1b[2J\\x1b[H\\x1b]0;owned\\x07cleared your screen", said
    assert said[1] == "[web1] deploy ok\\x0dEnable: green"
    assert answer["reason"] == "\\x1b[31mfailed\\x0dinjected"
    assert answer["switched_at"] == 0.0
