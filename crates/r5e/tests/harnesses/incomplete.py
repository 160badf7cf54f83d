"""A writer that always leaves out the last change, however often its draft is rejected."""
import json, sys
envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
changes = envelope["parameters"].get("changes", [])[:-1]
send(type="artifact", name="notes.md", content="".join(f"- {c.split(':', 1)[-1].strip()}\n" for c in changes))
send(type="reflection", wentWell="Wrote quickly", wentBadly="Did not read the review", couldImprove="Read the inputs")
send(type="done", outcome="Succeeded")
