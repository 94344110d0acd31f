"""pytest plugin loaded by benches/driver_suites.sh (-p loopback_guard): no test may
reach past this machine from Python. socket.connect to an address outside 127.0.0.0/8
and ::1 is refused before any packet, and names other than localhost are not looked
up. libpq's own connections are C code this cannot see: the tests that make them to
other hosts are deselected by name in the script."""

import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _loopback(host):
    if isinstance(host, bytes):
        host = host.decode()
    return host in (None, "", "localhost", "::1") or str(host).startswith("127.")


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise ConnectionRefusedError(f"driver_suites: loopback only, not {address[0]}")


def _connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"driver_suites: loopback only, not {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _connect
socket.socket.connect_ex = _connect_ex
socket.getaddrinfo = _getaddrinfo
