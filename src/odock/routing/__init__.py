"""Smart routing: plans, deployments, breakers, the attempt loop."""
