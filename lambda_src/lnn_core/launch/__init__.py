"""Launching a run: the launcher (checks, the run record, step 1) and the memory and size budget it checks."""
