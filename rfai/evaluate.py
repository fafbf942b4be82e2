"""`python -m rfai.evaluate --model MODEL [--adapter-path DIR] [--compare-adapter-path DIR]
--data SOURCE [--samples N] [--temperature T]`: rfai.cli.evaluate_main."""

import sys

from rfai.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
