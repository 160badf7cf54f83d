"""A task agent for which the work is too big: it declines so that the work is split."""
import json, sys
json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
send(type="decline", reason="NeedsSplitting", message="two unrelated areas changed; split them into one node each")
send(type="reflection", wentWell="Saw early that the task mixes two areas", wentBadly="Produced nothing", couldImprove="Plan nodes per area")
send(type="done", outcome="Succeeded")
