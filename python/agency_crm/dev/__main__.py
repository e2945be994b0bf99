from __future__ import annotations

import sys

from agency_crm.dev.generate import main

sys.exit(main())
