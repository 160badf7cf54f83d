#!/bin/sh
# A harness that records each start in $MARKER. Started first, it works for a long time (long
# enough to be killed); started again, it is the quickstart's writer.
if [ -s "$MARKER" ]; then
    echo started again >> "$MARKER"
    exec python3 agents/writer.py
fi
read -r envelope
echo started >> "$MARKER"
exec sleep 300
