"""The writer agent: turns raw commit subjects into release notes, or approved release notes into
a short announcement. On a second attempt it reads the review that rejected its first draft."""

import re

from r5e_harness import Session

PREFIXES = {"feat": "Added", "fix": "Fixed", "perf": "Improved", "docs": "Documented"}


def note_line(subject):
    kind, sep, text = subject.partition(":")
    verb = PREFIXES.get(kind.strip().lower()) if sep else None
    line = f"{verb} {text.strip()}" if verb else subject.strip()
    return "- " + (line[:1].upper() + line[1:]).rstrip(".")


def main():
    s = Session()
    p = s.parameters
    for g in s.guidelines:
        s.log(f"following guideline {g['name']} ({g['digest']})")
    feedback = [i for i in s.inputs if i["name"].startswith("review:")]
    if p.get("mode") == "notes":
        changes = p.get("changes", [])
        lines = [note_line(c) for c in changes]
        if p.get("sloppyFirstDraft") and not feedback:
            lines = lines[:-1]  # forgets the last change: the reviewer should notice
        too_long = []
        for line in lines:
            ok, result = s.call("word-count", text=line)
            if ok and result["words"] > p.get("maxWords", 14):
                too_long.append(line)
        body = f"# Release notes for {p.get('version', 'the next release')}\n\n" + "\n".join(lines) + "\n"
        s.artifact("notes.md", body)
        s.reflect(
            f"Turned {len(changes)} commit subjects into {len(lines)} lines"
            + (" after reading the review of the first draft" if feedback else ""),
            f"{len(too_long)} line(s) are longer than the word limit" if too_long else "Nothing went badly",
            "Give writers the list of merged pull requests, not only commit subjects",
        )
        s.done(True, f"{len(lines)} release-note lines")
    elif p.get("mode") == "announce":
        notes = next((i["content"] for i in s.inputs if not i["name"].startswith(("review:", "rejected:"))), "")
        items = [l[2:] for l in notes.splitlines() if l.startswith("- ")]
        headline = re.sub(r"\s+", " ", f"{p.get('product', 'We')} is out: " + "; ".join(items[:2]).lower())
        text = headline[:240].rstrip(" ;,") + "."
        s.artifact("announcement.txt", text + "\n", "text/plain")
        s.reflect(
            f"Built the announcement from {len(items)} approved release-note lines",
            "Only the first two changes fit into the announcement",
            "Let the workflow state the announcement's audience",
        )
        s.done(True, "announcement written")
    else:
        s.decline("OutOfScope", f"this writer writes release notes and announcements, not {p.get('mode')!r}")
        s.reflect("Recognised the request as outside my scope", "Nothing was produced", "Route such work elsewhere")
        s.done(True, "declined")


if __name__ == "__main__":
    main()
