"""Upload the dataset folder to the Hugging Face Hub: `python export_datasets.py --help`."""

import sys

from rfai.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
