#!/usr/bin/env bash
# Builds AIGIS and runs it on the bundled example config. Ctrl-C stops it
# (and every plugin it started).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
cargo build --release --bins

# The git plugin's repository: made once from examples/plugins/greeter.
repo=/tmp/aigis-example/greeter.git
if [ ! -d "$repo" ]; then
    work=$(mktemp -d)
    cp -R "$here/plugins/greeter/." "$work/"
    git -C "$work" init -q -b main
    git -C "$work" add -A
    git -C "$work" -c user.name=aigis -c user.email=aigis@example.invalid commit -q -m "greeter plugin"
    mkdir -p "$(dirname "$repo")"
    git clone -q --bare "$work" "$repo"
    rm -rf "$work"
fi

# Where cargo put it: $CARGO_TARGET_DIR when set (a relative one is taken
# from the repository root, where cargo ran), else ./target.
exec "${CARGO_TARGET_DIR:-target}/release/aigis" run -c "$here/config.aigis"
