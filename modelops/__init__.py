"""Build, publish and serve the classifiers: train, package (.mar), publish to S3, sync into TorchServe.

Run `python -m modelops --help` for the commands.
"""
