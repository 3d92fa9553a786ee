#!/usr/bin/env python3
"""Small servers and clients for Cordon's lab tests (standard library only).

  servers.py udp-echo HOST PORT            echo each datagram back, print the peer
  servers.py udp-send HOST PORT MSG        send one datagram, wait for the echo, print it
  servers.py tcp-hold HOST PORT SECONDS    connect, wait SECONDS, send a request, read the reply
  servers.py tcp-serve HOST PORT           accept, read one request, answer HTTP 200, close;
                                           print each peer and the request's first line
  servers.py icmp-ping HOST 0              one ICMP echo (raw socket, root), wait 1 s for the
                                           reply; exit 0 on a reply, 1 otherwise
  servers.py tcp-load HOST PORT RATE       connections to a tcp-serve at RATE per second until
                                           SIGINT: each sends a request and reads the answer;
                                           then prints "accepted N failed M" (N: answered)
"""
import signal
import socket
import struct
import sys
import time


def icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_ping(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(1)
    body = b"cordon"
    head = struct.pack("!BBHHH", 8, 0, 0, 0x4321, 1)
    packet = struct.pack("!BBHHH", 8, 0, icmp_checksum(head + body), 0x4321, 1) + body
    s.sendto(packet, (host, 0))
    deadline = time.time() + 1
    while time.time() < deadline:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        if addr[0] == host and len(data) > 20 and data[20] == 0:
            print("pong", flush=True)
            return
    sys.exit(1)


def udp_echo(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        print(f"udp {peer[0]}:{peer[1]} {len(data)}", flush=True)
        s.sendto(data, peer)


def udp_send(host, port, msg):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(msg.encode(), (host, port))
    data, _ = s.recvfrom(2048)
    print(data.decode(), flush=True)


def tcp_hold(host, port, seconds):
    s = socket.create_connection((host, port), timeout=5)
    time.sleep(seconds)
    s.sendall(b"GET /hold HTTP/1.0\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()


def tcp_serve(host, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, peer = srv.accept()
        conn.settimeout(10)
        try:
            data = conn.recv(4096)
            first = data.split(b"\r\n", 1)[0].decode(errors="replace")
            print(f"tcp {peer[0]}:{peer[1]} {first}", flush=True)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except OSError as e:
            print(f"tcp {peer[0]}:{peer[1]} error {e}", flush=True)
        conn.close()


def tcp_load(host, port, rate):
    # SIGINT only raises a flag, checked between connections, so every connection counted
    # is complete and every complete one is counted.
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    accepted = failed = 0
    period = 1.0 / rate
    next_at = time.monotonic()
    print("ready", flush=True)
    while not stop:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.settimeout(2)
            s.sendall(b"GET /load HTTP/1.0\r\n\r\n")
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            s.close()
            if reply.startswith(b"HTTP/1.0 200"):
                accepted += 1
            else:
                failed += 1
        except OSError:
            failed += 1
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    print(f"accepted {accepted} failed {failed}", flush=True)


def main():
    cmd, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if cmd == "icmp-ping":
        icmp_ping(host)
    elif cmd == "udp-echo":
        udp_echo(host, port)
    elif cmd == "udp-send":
        udp_send(host, port, sys.argv[4])
    elif cmd == "tcp-hold":
        tcp_hold(host, port, float(sys.argv[4]))
    elif cmd == "tcp-serve":
        tcp_serve(host, port)
    elif cmd == "tcp-load":
        tcp_load(host, port, float(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
