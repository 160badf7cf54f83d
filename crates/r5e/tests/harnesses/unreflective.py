"""A harness that produces output but never reflects, even when asked."""
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "artifact", "name": "out.txt", "content": "work without a look back"}), flush=True)
print(json.dumps({"type": "done", "outcome": "Succeeded"}), flush=True)
sys.stdin.readline()  # the reflect request, ignored
