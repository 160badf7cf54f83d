"""A small helper for writing r5e harnesses in Python: read the session envelope, call tools,
submit artifacts, verdicts, declines and reflections, and finish (protocol r5e.harness/v1)."""

import json
import sys


class Session:
    def __init__(self):
        line = sys.stdin.readline()
        if not line:
            sys.exit("no session envelope on stdin")
        message = json.loads(line)
        if message.get("type") != "session":
            sys.exit(f"expected a session envelope, got {message.get('type')!r}")
        self.envelope = message
        self._calls = 0

    # What the session was given.
    @property
    def role(self):
        return self.envelope["session"]["role"]

    @property
    def parameters(self):
        return self.envelope.get("parameters", {})

    @property
    def inputs(self):
        return self.envelope.get("inputs", [])

    @property
    def guidelines(self):
        return self.envelope.get("guidelines", [])

    @property
    def review(self):
        return self.envelope.get("review")

    # What it sends.
    def send(self, **message):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def receive(self, expected):
        line = sys.stdin.readline()
        if not line:
            sys.exit(f"r5e closed the session while {expected} was awaited")
        message = json.loads(line)
        if message.get("type") != expected:
            sys.exit(f"expected {expected}, got {message.get('type')!r}")
        return message

    def call(self, tool, **arguments):
        """Call a Tool; returns (ok, result or error)."""
        self._calls += 1
        call_id = f"call-{self._calls}"
        self.send(type="tool_call", id=call_id, tool=tool, arguments=arguments)
        answer = self.receive("tool_result")
        return answer["ok"], answer.get("result") if answer["ok"] else answer.get("error")

    def log(self, text):
        self.send(type="log", message=text)

    def artifact(self, name, content, media_type="text/markdown"):
        self.send(type="artifact", name=name, mediaType=media_type, content=content)

    def verdict(self, approve, comments):
        self.send(type="verdict", verdict="Approve" if approve else "Reject", comments=comments)

    def decline(self, reason, message):
        self.send(type="decline", reason=reason, message=message)

    def reflect(self, went_well, went_badly, could_improve):
        self.send(type="reflection", wentWell=went_well, wentBadly=went_badly, couldImprove=could_improve)

    def done(self, succeeded=True, message=""):
        self.send(type="done", outcome="Succeeded" if succeeded else "Failed", message=message)
