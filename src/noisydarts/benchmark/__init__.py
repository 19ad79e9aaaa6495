"""NAS-Bench-201 as an offline table: the accuracy of every cell, looked up without training (torch-free)."""
