"""What every schedule must keep: the invariants (`invariants.Monitor`) and its model and reference checks
(`model_checks`)."""
