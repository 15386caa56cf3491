import sys

from audiorep.cli import main

sys.exit(main())
