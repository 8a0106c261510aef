"""Run every tests/mount/test_*.py (or those named) with unittest."""
import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
loader = unittest.TestLoader()
names = sys.argv[1:]
if names:
    suite = unittest.TestSuite(loader.loadTestsFromName(n) for n in names)
else:
    suite = loader.discover(here, pattern="test_*.py")
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
