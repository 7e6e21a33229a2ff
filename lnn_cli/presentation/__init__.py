"""What `lnn` shows people: progress bars, summaries, SNS messages and the cost curve."""
