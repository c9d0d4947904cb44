"""Evaluate a checkpoint on a test split: python tools/eval.py -c RUN_DIR/student_best [-m MODEL] [-d DATASET]"""
import os
import sys

# run from a clone without installing: the package sits next to tools/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from passive_waits import passive_if_busy  # noqa: E402  (before torch loads: tools/ is on sys.path)

passive_if_busy()  # the run's opening lines say so (runtime.busy_machine_warning)

from mdistiller_ext.cli.eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
