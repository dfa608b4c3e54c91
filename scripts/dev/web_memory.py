"""The daemon's memory with the review page off and on (docs/REVIEW.md): `facegate run` on the
bundled photos (folder source, looping) with a mosquitto on loopback, review on in both; with
the page on, a client logs in and loads the page and its thumbnails 20 times. Peak and current
RSS from /proc after 25 s, the two configs alternated for ``--rounds`` rounds.

    .venv/bin/python scripts/dev/web_memory.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "demo" / "photos"
TOKEN = "memory-check-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return float(fields["VmRSS"].split()[0]) / 1024, float(fields["VmHWM"].split()[0]) / 1024


def browse(port: int) -> tuple[int, int]:
    """(pages, thumbnails) fetched with status 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/login", f"token={TOKEN}", {"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
    response.read()
    pages = thumbs = 0
    for _ in range(20):
        conn.request("GET", "/", headers={"Cookie": cookie})
        response = conn.getresponse()
        page = response.read().decode()
        pages += response.status == 200
        for src in {part.split("'")[0].split(">")[0] for part in page.split("src=")[1:]}:
            conn.request("GET", urllib.parse.quote(src), headers={"Cookie": cookie})
            image = conn.getresponse()
            thumbs += image.status == 200 and image.read()[:2] == b"\xff\xd8"
        time.sleep(0.2)
    conn.close()
    return pages, thumbs


def run(folder: pathlib.Path, broker: int, web: bool) -> tuple[float, float, str]:
    web_port = free_port()
    config = {
        "device": {"id": "memcheck"},
        "camera": {"source": "folder", "path": str(PHOTOS), "loop": True, "max_fps": 10},
        "gallery": {"path": str(folder / "gallery.db")},
        "mqtt": {"port": broker, "outbox": str(folder / "outbox")},
        "review": {"enabled": True},
        "web": {"enabled": web, "port": web_port, "token": TOKEN},
    }
    path = folder / f"config-{web}.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "facegate", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)
        served = ""
        if web:
            pages, thumbs = browse(web_port)
            served = f" ({pages} pages and {thumbs} thumbnails served)"
        time.sleep(25 - 8 - (4 if web else 0))
        return (*rss(daemon.pid), served)
    finally:
        daemon.terminate()
        daemon.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for web in (False, True):
                    now, peak, served = run(pathlib.Path(tmp), port, web)
                    label = "page on " if web else "page off"
                    print(
                        f"round {r + 1}, {label}: RSS {now:.1f} MiB, peak {peak:.1f} MiB{served}", flush=True
                    )
    finally:
        broker.terminate()


if __name__ == "__main__":
    main()
