"""Developer checks run by make targets and the tests: dependency audit, offline Kubernetes manifest validation."""
