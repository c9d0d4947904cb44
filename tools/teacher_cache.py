"""Show or fill a config's teacher-logit cache: python tools/teacher_cache.py --cfg CONFIG.yaml [--build] [KEY VALUE ...]"""
import os
import sys

# run from a clone without installing: the package sits next to tools/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller_ext.cli.teacher_cache import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
