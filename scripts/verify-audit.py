#!/usr/bin/env python3
"""Independent verifier for r5e audit exports (JSON Lines, one event per line).

Checks, line by line, that each line is a JSON object written in its exact
RFC 8785 (JCS) canonical form, that `seq` equals the line number, that
`prev_hash` equals the previous line's `hash` (a fixed genesis value for the
first line), and that `hash` is "sha256:" + hex SHA-256 of the canonical form
of the event without its `hash` member. Stops at the first bad event.

    python3 verify-audit.py FILE [--expect-head sha256:...]
    python3 verify-audit.py --selftest

Exit status: 0 verified, 1 chain broken or head mismatch, 2 usage or I/O error.
See docs/audit-format.md for the format. Standard library only.
"""

import argparse
import hashlib
import json
import re
import sys

GENESIS = "sha256:" + "0" * 64
REQUIRED = {"seq": int, "time": str, "type": str, "actor": str,
            "subject": str, "data": object, "prev_hash": str, "hash": str}
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t",
                 "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class Broken(Exception):
    """The chain is broken at the current line; the message is the reason."""


# ---------------------------------------------------------------- RFC 8785

def canon_number(x):
    """Format a number as ECMAScript's Number.prototype.toString does."""
    if isinstance(x, int):
        return str(x)  # r5e writes only integers within +/-2^53
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and Infinity have no JSON form")
    if x == 0:
        return "0"  # also covers -0
    sign = "-" if x < 0 else ""
    # repr() gives the shortest digit string that round-trips, as ES requires.
    mant, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    n = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)  # value = 0.<digits> * 10^n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits if k == 1 else digits[0] + "." + digits[1:]
        out = head + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + out


def canon_string(s):
    out = ['"']
    for ch in s:
        if ch in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[ch])
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        elif "\ud800" <= ch <= "\udfff":
            raise ValueError("string contains a lone surrogate")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canon(v):
    """Return the RFC 8785 canonical form of a parsed JSON value as str."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return canon_number(v)
    if isinstance(v, str):
        return canon_string(v)
    if isinstance(v, list):
        return "[" + ",".join(canon(i) for i in v) + "]"
    if isinstance(v, dict):
        # Sort by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
        keys = sorted(v, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(canon_string(k) + ":" + canon(v[k]) for k in keys) + "}"
    raise ValueError("not a JSON value: %r" % type(v))


def canon_bytes(v):
    return canon(v).encode("utf-8")


def _no_duplicates(pairs):
    obj = {}
    for k, val in pairs:
        if k in obj:
            raise ValueError("duplicate member name %r" % k)
        obj[k] = val
    return obj


def _no_constants(name):
    raise ValueError("%s is not valid JSON" % name)


def parse(text):
    return json.loads(text, object_pairs_hook=_no_duplicates,
                      parse_constant=_no_constants)


def event_hash(event):
    body = {k: val for k, val in event.items() if k != "hash"}
    return "sha256:" + hashlib.sha256(canon_bytes(body)).hexdigest()


# ------------------------------------------------------------ verification

def check_line(raw, seq, prev):
    """Check one line (without its newline); return the event's hash."""
    try:
        event = parse(raw.decode("utf-8"))
    except ValueError as e:  # includes UnicodeDecodeError and JSONDecodeError
        raise Broken("line is not valid JSON (%s)" % e)
    if not isinstance(event, dict):
        raise Broken("line is not a JSON object")
    try:
        canonical = canon_bytes(event)
    except ValueError as e:
        raise Broken("line cannot be canonicalised (%s)" % e)
    if canonical != raw:
        raise Broken("line is not in RFC 8785 canonical form")
    for name, kind in REQUIRED.items():
        if name not in event:
            raise Broken("member %r is missing" % name)
        if kind is not object and (not isinstance(event[name], kind)
                                   or isinstance(event[name], bool)):
            raise Broken("member %r has the wrong type" % name)
    if event["seq"] != seq:
        raise Broken("seq is %d, expected %d" % (event["seq"], seq))
    if event["prev_hash"] != prev:
        raise Broken("prev_hash does not match the previous event's hash")
    if event["hash"] != event_hash(event):
        raise Broken("hash does not match the event's contents")
    return event["hash"]


def verify(data, expect_head=None):
    """Verify an export's bytes. Return (count, head) or raise Broken with seq."""
    lines = data.split(b"\n")
    terminated = lines[-1] == b""
    if terminated:
        lines.pop()  # the newline ending the last line opens no new line
    head, hashes = GENESIS, {}
    for seq, raw in enumerate(lines, start=1):
        try:
            if seq == len(lines) and not terminated:
                raise Broken("line is not terminated by a newline")
            head = check_line(raw, seq, head)
        except Broken as e:
            raise Broken("chain broken at seq %d: %s" % (seq, e))
        hashes[head] = seq
    count = len(lines)
    if expect_head is not None and head != expect_head:
        if expect_head in hashes:
            raise Broken("head mismatch: the expected head is the hash of seq %d, "
                         "but the file continues to seq %d" % (hashes[expect_head], count))
        raise Broken("head mismatch: the file ends at seq %d with head %s, expected %s"
                     % (count, head, expect_head))
    return count, head


# ---------------------------------------------------------------- self-test

def selftest():
    rfc_in = (r'{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
              r'"string":"\u20ac$\u000F\u000aA' "'" r'\u0042\u0022\u005c\\\"\/",'
              r'"literals":[null,true,false]}')
    rfc_out = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
               '1e-27],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001F600", "\u0080", "\u00f6"]
    want = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"]
    numbers = {1e21: "1e+21", 1e20: "100000000000000000000", 1e-7: "1e-7",
               0.000001: "0.000001", -0.0: "0", 4.0: "4", -1.5: "-1.5",
               5e-324: "5e-324", 1.7976931348623157e308: "1.7976931348623157e+308",
               123456789012345680000.0: "123456789012345680000",
               9007199254740992.0: "9007199254740992", 1.5e-7: "1.5e-7"}
    failures = []
    if canon_bytes(parse(rfc_in)) != rfc_out.encode("utf-8"):
        failures.append("RFC 8785 section 3.2.2 example")
    got = list(parse(canon(dict.fromkeys(keys, 0))))
    if got != want:
        failures.append("UTF-16 key ordering: %r" % got)
    for x, s in numbers.items():
        if canon_number(x) != s:
            failures.append("number %r gave %s, expected %s" % (x, canon_number(x), s))
    for f in failures:
        print("selftest FAILED: " + f, file=sys.stderr)
    if not failures:
        print("selftest passed")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description="Verify an r5e audit export (JSON Lines).")
    ap.add_argument("file", nargs="?", help="the exported .jsonl file ('-' for stdin)")
    ap.add_argument("--expect-head", metavar="HASH",
                    help="fail unless the last event's hash is HASH")
    ap.add_argument("--selftest", action="store_true",
                    help="check the canonicaliser against RFC 8785 examples")
    args = ap.parse_args()
    if args.selftest:
        return selftest()
    if args.file is None:
        ap.error("a FILE is required")
    if args.expect_head is not None and not HASH_RE.match(args.expect_head):
        ap.error("--expect-head must be 'sha256:' followed by 64 lowercase hex digits")
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
    except OSError as e:
        print("cannot read %s: %s" % (args.file, e), file=sys.stderr)
        return 2
    try:
        count, head = verify(data, args.expect_head)
    except Broken as e:
        print(e, file=sys.stderr)
        return 1
    print("verified %d events, head %s" % (count, head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
