import sys

from lmforget.cli import main

sys.exit(main())
