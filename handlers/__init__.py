"""The TorchServe handlers and the serving code they share (tokenising, image decoding, the linear member,
calibration).

A package like any other in the repository; packaging copies it whole into each archive beside the handler
entry file, and TorchServe puts the archive's folder first on the worker's path, so an archive always runs
the handler code it was built with.
"""
