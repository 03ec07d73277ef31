"""A user's own tasks: checking their data, writing their spec, adding, listing and removing them."""


class TaskError(ValueError):
    """A task cannot be added or removed; the message says why and what to do."""
