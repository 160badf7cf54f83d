"""The reviewer agent: checks the artifact under review against what it was made from, and
approves or rejects it with comments that say what must change."""

from r5e_harness import Session


def main():
    s = Session()
    if s.role != "Reviewer" or not s.review:
        s.decline("OutOfScope", "this agent only reviews")
        s.reflect("Refused work that is not a review", "Nothing was reviewed", "Send only reviews here")
        s.done(True)
        return
    p = s.parameters
    text = s.review.get("content") or ""
    problems = []
    if p.get("mode") == "notes":
        lines = [l for l in text.splitlines() if l.startswith("- ")]
        if len(lines) != len(p.get("changes", [])):
            problems.append(f"{len(p.get('changes', []))} changes were merged but the notes have {len(lines)} lines")
        problems += [f"line ends with a period: {l}" for l in lines if l.endswith(".")]
    elif p.get("mode") == "announce":
        if len(text) > 280:
            problems.append(f"the announcement has {len(text)} characters, more than 280")
        if p.get("product") and p["product"] not in text:
            problems.append(f"the announcement does not name {p['product']}")
    s.verdict(not problems, "; ".join(problems) or "Every check passed")
    s.reflect(
        f"Checked {s.review['name']} ({s.review['digest'][:19]}...)",
        "; ".join(problems) or "Nothing went badly",
        "Give reviewers the house style as checkable rules",
    )
    s.done(True, "rejected" if problems else "approved")


if __name__ == "__main__":
    main()
