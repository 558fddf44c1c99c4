import sys

from pgq.cli import main

sys.exit(main())
