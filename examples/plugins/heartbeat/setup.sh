#!/bin/sh
# The requirements step: AIGIS runs `sh setup.sh '<root>/requirements.txt'`
# in ENTRYPOINT before the first start. A real plugin would run pip, npm, ...
echo "setup: $(wc -l < "$1") requirement(s) listed in $(basename "$1"), nothing to install"
