"""An orchestrator: re-plans declined work into new Nodes. It first tries to grant a new Node
more authority than it holds, then a Node its scope does not cover: admission must refuse both."""
import json, sys
envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
held = envelope["authority"]
changes = envelope["parameters"]["changes"]

def create(i, name, node):
    send(type="create_node", id=f"n{i}", name=name, node=node)
    return json.loads(sys.stdin.readline())

wide = dict(held, capabilities=held.get("capabilities", []) + ["deploy.prod"])
answer = create(0, "too-wide", {"description": "a node with more authority than the orchestrator holds", "authority": wide})
if answer["ok"]:
    send(type="done", outcome="Failed", message="admission let me widen authority")
    sys.exit(0)
send(type="log", message=f"refused as expected: {answer['error']}")
answer = create(9, "stray", {"description": "a node outside the orchestrator's scope", "authority": held})
if answer["ok"]:
    send(type="done", outcome="Failed", message="admission let me create a node outside my scope")
    sys.exit(0)
send(type="log", message=f"refused as expected: {answer['error']}")
half = len(changes) // 2
for i, part in enumerate([changes[:half], changes[half:]], start=1):
    answer = create(i, f"part-{i}", {
        "description": f"release notes, part {i}",
        "workflowRef": {"name": "write-and-review"},
        "inputs": {"mode": "notes", "version": "2.4", "changes": part},
        "authority": held,
    })
    if not answer["ok"]:
        send(type="done", outcome="Failed", message=answer["error"])
        sys.exit(0)
send(type="reflection", wentWell="Split the work in two", wentBadly="Nothing", couldImprove="Split before assigning")
send(type="done", outcome="Succeeded", message="two nodes")
