"""The lab: datasets held as tensors in memory, models, and the experiments that train them."""
