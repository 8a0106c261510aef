"""A first smoke test of the mount: topics, append, read back."""
import errno
import os
import unittest

from mountlib import MountTest


class TestBasic(MountTest):
    def test_append_and_read_back(self):
        os.mkdir(self.m.path("t"))
        self.sh("echo hello >> t/0 && echo world >> t/0")
        self.assertEqual(self.read("t", "0"), b"hello\nworld\n")
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, 12)
        r = self.sh("echo x > t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertErrno(errno.EINVAL, os.mkdir, self.m.path(".hidden"))


if __name__ == "__main__":
    unittest.main()
