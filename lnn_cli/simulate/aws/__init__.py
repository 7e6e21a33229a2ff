"""The simulated AWS: moto's backends in process (`world`) and the clients that reach them without boto3's round trip
(`direct_clients`). It imports nothing else of the simulator."""
