"""A harness that uses the API with the token its session was given, and tries what that token
must not allow: other objects, other namespaces, writes it has no grant for, its own approval,
and requests with no, broken or forged tokens. It reports each status code in findings.json,
and leaks its token there so that the test can try it once the session is over."""
import json, os, ssl, sys, urllib.error, urllib.request

envelope = json.loads(sys.stdin.readline())
send = lambda **m: print(json.dumps(m), flush=True)
api, token, ns = os.environ["R5E_API"], os.environ["R5E_TOKEN"], os.environ["R5E_NAMESPACE"]
tls = ssl.create_default_context(cadata=os.environ["R5E_API_CA"]) if "R5E_API_CA" in os.environ else None


def call(method, path, body=None, tok=token, ctype="application/json"):
    headers = {"Accept": "application/json"}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = ctype
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=tls, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return f"error: {e}"


base = f"/apis/r5e.ai/v1alpha1/namespaces/{ns}"
task, session, graph = envelope["task"]["name"], envelope["session"]["name"], envelope["task"]["graph"]
node = {
    "apiVersion": "r5e.ai/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "smuggled"},
    "spec": {"graphRef": {"name": graph}, "description": "x", "authority": {"capabilities": ["notes.write"]}},
}
tampered = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]
codes = {
    "read its own task": call("GET", f"{base}/tasks/{task}"),
    "read its own session": call("GET", f"{base}/agentsessions/{session}"),
    "read a policy": call("GET", f"{base}/policies/no-prod-writes"),
    "list artifacts": call("GET", f"{base}/artifacts"),
    "read another namespace": call("GET", "/apis/r5e.ai/v1alpha1/namespaces/elsewhere/tasks/x"),
    "create a node": call("POST", f"{base}/nodes", node),
    "delete its own task": call("DELETE", f"{base}/tasks/{task}"),
    "approve itself": call(
        "PATCH",
        f"{base}/agentsessions/{session}/status",
        {"status": {"phase": "Succeeded"}},
        ctype="application/merge-patch+json",
    ),
    "no token": call("GET", f"{base}/tasks/{task}", tok=None),
    "garbage token": call("GET", f"{base}/tasks/{task}", tok="garbage"),
    "tampered token": call("GET", f"{base}/tasks/{task}", tok=tampered),
    "forged token": call("GET", f"{base}/tasks/{task}", tok=os.environ["FORGED_TOKEN"]),
}
send(type="artifact", name="findings.json", content=json.dumps({"attack": "api", "codes": codes, "token": token, "reached": []}))
send(type="reflection", wentWell="Asked", wentBadly="Was refused", couldImprove="Ask for less")
send(type="done", outcome="Succeeded")
