"""A deterministic simulator of LNN's real handlers under one seeded scheduler (issue 16). See docs/simulation.md.

python -m lnn_cli.simulate --seeds 200          # seeds 0..199, throughput and faults by kind
python -m lnn_cli.simulate --seed 1234 --trace  # replay one schedule, with its trace
python -m lnn_cli.simulate --seed 1234 --shrink # the smallest set of its faults that still fails
python -m lnn_cli.simulate --exhaustive         # every interleaving of the small cases
"""
