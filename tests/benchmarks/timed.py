"""`timed.py REPORT CMD…`: runs CMD and writes how long it took, and when it started, as
JSON to REPORT. The same wrapper times every variant of the benchmark, inside `run` or not."""

import json
import subprocess
import sys
import time

started_at = time.time()
started = time.perf_counter()
status = subprocess.run(sys.argv[2:]).returncode
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    json.dump({"seconds": seconds, "started_at": started_at, "status": status}, report)
sys.exit(status)
