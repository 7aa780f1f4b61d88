"""Example plugins for users to copy; not registered unless named with ``--plugin``."""
