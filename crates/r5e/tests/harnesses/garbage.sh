#!/bin/sh
# A harness that prints something that is not the protocol.
read -r envelope
echo "Sure! Here are your release notes:"
sleep 300
