"""The network-namespace lab (root only) and its demo."""
