import sys

from nrt.cli import main

sys.exit(main())
