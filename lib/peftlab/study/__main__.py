"""`python -m peftlab.study`: see peftlab.study.plan."""

import sys

from peftlab.study.plan import main

sys.exit(main())
