"""The chaos suite (`make chaos`): kill -9 every process of the money path in turn, count at the venue."""
