"""``python -m ros2_iterprime.cli ...`` = the ``ros2_iterprime`` command."""
import sys

from .main import main

sys.exit(main())
