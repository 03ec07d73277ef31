"""The service on one machine without Docker (`make run`): the process supervisor, and the secrets Compose reads."""
