"""A fleet of nodes behind one gateway: the nodes file, their health, routing and failover."""
