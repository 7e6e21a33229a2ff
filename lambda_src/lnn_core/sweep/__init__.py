"""The sweep controller and what it reads: a sweep's record, its halving, its results and its one message."""
