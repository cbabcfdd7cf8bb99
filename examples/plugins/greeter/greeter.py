"""A tiny external plugin in Python, fetched by AIGIS from a git repository."""
import os
import sys
import time

name = os.environ.get("AIGIS_PLUGIN", "greeter")
print(f"{name}: hello from a git checkout at {os.getcwd()}")
for n in range(1, 1_000_000):
    print(f"{name}: greeting #{n}")
    if n % 5 == 0:
        print(f"{name}: stderr works too", file=sys.stderr)
    time.sleep(3)
