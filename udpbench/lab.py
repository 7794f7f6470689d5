"""The network-namespace lab: client - router - server on one machine (root only)."""


def add_parser(commands):
    parser = commands.add_parser("lab", help="build an emulated LAN in network namespaces (root)")
    parser.set_defaults(func=lambda args: 0)
