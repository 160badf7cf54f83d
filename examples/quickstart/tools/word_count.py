"""The word-count tool: reads {"text": ...} on stdin and prints {"words": N, "characters": N}."""

import json
import sys

args = json.load(sys.stdin)
text = args["text"]
print(json.dumps({"words": len(text.split()), "characters": len(text)}))
