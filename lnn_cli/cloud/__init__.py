"""The local cloud: an embedded AWS (a moto server), the stack deployed onto it, a local Lambda runtime that runs the
handlers, the chaos harness that injects Lambda's faults, and the drivers of local runs."""
