"""`python -m rfai.upload_model --run_dir runs/NAME --repo_id ORG/NAME [--fuse]`."""

import sys

from rfai.cli import upload_model_main

if __name__ == "__main__":
    sys.exit(upload_model_main())
