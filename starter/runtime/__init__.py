"""What every abdr process shares: settings, logging, the Temporal connection and plan
schedules. The only part of `starter/` that the worker and activities may import
(tests/test_layering.py keeps it so); it imports nothing else of `starter/`."""
