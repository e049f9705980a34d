#!/bin/sh
# With a command as arguments (kiln run hello echo hi), run it; otherwise greet.
if [ $# -gt 0 ] && command -v "$1" >/dev/null 2>&1; then
    exec "$@"
fi
echo "$GREETING, ${1:-world}!"
cat /app/shout.txt
