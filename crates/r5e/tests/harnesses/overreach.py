"""A harness that tries to call tools beyond its authority, then reports what happened."""
import json, sys
envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
results = []
for i, (tool, args) in enumerate([("word-count", {"text": "a b"}), ("deploy", {"env": "prod"})]):
    send(type="tool_call", id=f"c{i}", tool=tool, arguments=args)
    answer = json.loads(sys.stdin.readline())
    results.append(f"{tool}: ok={answer['ok']} {answer.get('error', '')}")
if any("ok=True" in r for r in results):
    send(type="done", outcome="Failed", message="a call beyond my authority was allowed")
    sys.exit(0)
send(type="artifact", name="notes.md", content="".join(f"- {c.split(':', 1)[-1].strip()}\n" for c in envelope["parameters"].get("changes", [])))
send(type="log", message="; ".join(results))
send(type="reflection", wentWell="Stayed within authority", wentBadly="Tried two tools I may not use", couldImprove="List only usable tools")
send(type="done", outcome="Succeeded")
