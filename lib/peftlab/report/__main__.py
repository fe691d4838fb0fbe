"""`python -m peftlab.report`: see peftlab.report.build."""

import sys

from peftlab.report.build import main

sys.exit(main())
