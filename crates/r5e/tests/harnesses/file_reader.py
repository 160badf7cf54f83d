"""A Tool with a hole: it prints the file its arguments name, wherever that is."""
import json, sys
path = json.load(sys.stdin)["path"]
with open(path) as f:
    print(json.dumps({"content": f.read()}))
