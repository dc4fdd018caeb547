"""`ray job submit --working-dir . -- python ray_jobs/run.py CONFIG [--out DIR]`: run a config on the cluster.

Thin entry point: the job's driver joins the cluster it was submitted to (RAY_ADDRESS is set by Ray) and calls the
same library function as `genbench run`.
"""

from __future__ import annotations

import os
import sys

# The job runs from the uploaded working directory; make its genbench importable without an install.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genbench.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["--no-progress", "run", *sys.argv[1:]]))
