"""The trainer's exactly-once step protocol: the Trainer, its step bodies, events, schedule, storage layout and
epoch results, sending the next step and ending a run (its model and its one message)."""
