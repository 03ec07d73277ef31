"""Bulk jobs: the worker that classifies a whole file, shard by shard, checkpointed in S3."""
