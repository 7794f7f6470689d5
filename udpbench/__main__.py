import sys

from udpbench.cli import main

sys.exit(main())
