"""The inference flow every API family shares, with no HTTP in it: the request as the flow takes it,
its admission, the backend that runs it (this engine or a gateway's nodes), its record and metrics."""
