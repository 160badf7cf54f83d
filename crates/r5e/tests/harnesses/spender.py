"""A harness that calls a Tool with arguments its schema refuses, then more often than its
tool_calls budget allows, and reports what it was told."""
import json, sys
envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
answers = []
calls = [{"text": 5, "extra": True}] + [{"text": f"call {i}"} for i in range(11)]
for i, arguments in enumerate(calls):
    send(type="tool_call", id=f"c{i}", tool="word-count", arguments=arguments)
    answers.append(json.loads(sys.stdin.readline()))
allowed = sum(1 for a in answers if a["ok"])
send(type="log", message=f"{allowed} calls allowed")
changes = envelope["parameters"].get("changes", [])
send(type="artifact", name="notes.md", content="".join(f"- {c.split(':', 1)[-1].strip()}\n" for c in changes))
send(type="reflection", wentWell="Counted words", wentBadly="Called too often", couldImprove="Respect the budget")
send(type="done", outcome="Succeeded")
