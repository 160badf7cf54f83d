"""A task agent that tries to hand its work to a new Node instead of declining."""
import json, sys
json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
send(type="create_node", id="n1", name="someone-else", node={"description": "do my work", "authority": {}})
answer = sys.stdin.readline()
send(type="log", message=f"got {answer.strip()}")
send(type="done", outcome="Succeeded")
