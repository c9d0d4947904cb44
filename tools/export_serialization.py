"""Export AEKT's serialization matrix against the teacher's class similarity: python tools/export_serialization.py --help (mdistiller_ext/cli/export_serialization.py)."""
import os
import sys

# run from a clone without installing: the package sits next to tools/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller_ext.cli.export_serialization import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
