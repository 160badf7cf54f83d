#!/bin/sh
# A harness that never answers (and ignores SIGTERM, so it has to be killed).
trap '' TERM
read -r envelope
sleep 300
