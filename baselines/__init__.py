"""Comparison policies: fair share, FIFO and Spark-native FAIR."""
