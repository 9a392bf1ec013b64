"""__main__.py: `python -m sharedmap` runs the command line tool (sharedmap.cli)."""
import sys

from sharedmap.cli import main

if __name__ == "__main__":
    sys.exit(main())
