import sys

from facegate.cli import main

sys.exit(main())
