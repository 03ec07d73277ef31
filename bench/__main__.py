"""`python -m bench` (`make bench`): the throughput bench of `bench.throughput`."""

from bench.throughput import main

main()
