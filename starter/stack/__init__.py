"""The embedded stack: `abdr up` (up.py), the demo it seeds (demo.py), `abdr status`
(status.py). Nothing outside the CLI imports it; it imports the worker module, never the reverse."""
