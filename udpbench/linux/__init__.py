"""What the Linux kernel offers and tells: socket options, netlink, /proc counters."""
