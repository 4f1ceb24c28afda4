import sys

from mcpmesh.meshctl.cli import main

sys.exit(main())
