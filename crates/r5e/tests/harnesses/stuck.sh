#!/bin/sh
# A harness that records each start in $MARKER, then works for a long time.
read -r envelope
echo started >> "$MARKER"
exec sleep 300
