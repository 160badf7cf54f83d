"""A harness that forgets to reflect, but does when r5e asks it to."""
import json, sys
envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
changes = envelope["parameters"].get("changes", [])
send(type="artifact", name="notes.md", content="".join(f"- {c.split(':', 1)[-1].strip()}\n" for c in changes))
send(type="done", outcome="Succeeded")
asked = json.loads(sys.stdin.readline())
assert asked["type"] == "reflect", asked
send(type="reflection", wentWell="Wrote the notes", wentBadly="Forgot to reflect until asked", couldImprove="Reflect before done")
