"""The built-in tasks' public originals: where each is, its pinned checksum, and how it becomes the data folder's
files (`modelops data fetch`, and `make run` on a clone without the data folder)."""
