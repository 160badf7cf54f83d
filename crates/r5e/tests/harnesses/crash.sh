#!/bin/sh
# A harness that crashes right after reading its envelope.
read -r envelope
echo "something broke inside the agent" >&2
exit 3
