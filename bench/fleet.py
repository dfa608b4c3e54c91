"""``facegate bench fleet``: one authority, many simulated devices, one mosquitto.

Each simulated device is an MQTT client running the product's own sync code
(``facegate.fleet.FleetMember`` over ``FleetSync`` and an in-memory store): it
checks every signature and applies every entry, as a device does, but keeps
the gallery in memory instead of SQLite (100 SQLite files with 10,000 fsynced
transactions each would measure the disk, not the sync). Devices are spread
over worker processes so they do not share one interpreter lock.

Measured: time from the first publish until every device has converged on
the manifest (the whole gallery), the time for a single change to reach every
device, the time for a device that joins late to converge from the retained
messages alone, and the memory of the broker and of a device.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pathlib
import subprocess
import tempfile
import time
from typing import Any

import numpy as np

from facegate.bench.device import _cpu_name, _rss_mb
from facegate.errors import FacegateError
from facegate.gallery import Gallery, ModelFingerprint, Sample

MODEL = ModelFingerprint("f" * 64, "bench-model", 128)
PREFIX = "facegate/fleet/bench"


def _device_worker(
    port: int, public_key: str, ids: list[str], conn: multiprocessing.connection.Connection, resync_s: float
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from facegate.fleet import Ed25519Verifier, FleetMember, FleetSync, MemoryStore

    base_rss = _rss_mb()
    verifier = Ed25519Verifier.from_file(public_key)
    converged: dict[str, dict[str, float]] = {i: {} for i in ids}
    clients, members = [], []
    subscribed = multiprocessing.Semaphore(0)
    for device_id in ids:
        sync = FleetSync(MemoryStore(), verifier, MODEL.sha256, MODEL.embedding_size, PREFIX)
        member = FleetMember(sync, device_id, report_every_s=1.0, resync_after_s=resync_s)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311)

        def on_message(c: Any, u: Any, m: Any, member: FleetMember = member) -> None:
            member.handle(c, m.topic, bytes(m.payload))
            status = member.status
            if status["converged"]:
                converged[member.device_id].setdefault(status["hash"], time.time())

        def on_connect(c: Any, u: Any, f: Any, r: Any, p: Any, member: FleetMember = member) -> None:
            c.subscribe([(t, 1) for t in member.subscriptions()])

        client.on_message = on_message
        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.release()
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        clients.append(client)
        members.append(member)
    for _ in ids:
        subscribed.acquire(timeout=60)
    conn.send(("ready", _rss_mb() - base_rss))
    while True:
        command, target, timeout = conn.recv()
        if command == "stop":
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(target in c for c in converged.values()):
            time.sleep(0.05)
        times = {i: c.get(target) for i, c in converged.items()}
        resyncs = sum(m.resyncs for m in members)
        conn.send((times, _rss_mb(), (_rss_mb() - base_rss) / len(ids), resyncs))
    for member in members:
        member.cancel()
    for client in clients:
        client.disconnect()
        client.loop_stop()


def _mosquitto(max_queued: int) -> tuple[subprocess.Popen[bytes], int]:
    from facegate.demo.broker import mosquitto_exe, start_mosquitto

    exe = mosquitto_exe()
    if exe is None:
        raise FacegateError("the fleet benchmark needs mosquitto (apt install mosquitto)")
    # mosquitto's defaults, except max_queued_messages: 0 (no cap, as docs/FLEET.md advises)
    # by default; 1000 is mosquitto's own default, under which a burst drops entries.
    return start_mosquitto(exe, f"max_queued_messages {max_queued}\n")


def _publish(port: int, messages: list[tuple[str, bytes]]) -> float:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-authority", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.time()
    infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    return started


def _gather(
    workers: list[tuple[Any, multiprocessing.connection.Connection]],
    target: str,
    started: float,
    timeout: float,
) -> dict[str, Any]:
    for _, conn in workers:
        conn.send(("wait", target, timeout))
    delays: list[float] = []
    missing = 0
    rss, per_device = [], []
    resyncs = 0
    for _, conn in workers:
        times, worker_rss, device_mb, worker_resyncs = conn.recv()
        resyncs += worker_resyncs
        delays += [t - started for t in times.values() if t is not None]
        missing += sum(t is None for t in times.values())
        rss.append(worker_rss)
        per_device.append(device_mb)
    return {
        "all_converged_s": round(max(delays), 3) if delays and not missing else None,
        "median_s": round(float(np.median(delays)), 3) if delays else None,
        "not_converged": missing,
        "worker_rss_mb": [round(r, 1) for r in rss],
        "device_mb": round(float(np.mean(per_device)), 2),
        "resyncs": resyncs,
    }


def _one_device(
    messages: list[tuple[str, bytes]],
    change: list[tuple[str, bytes]],
    public: pathlib.Path,
    work: pathlib.Path,
) -> dict[str, float]:
    """One device alone (no broker, no other devices): ms per message of the whole gallery,
    then ms for the single change, into memory, into a gallery file as the daemon opens it
    for the fleet, and into one that fsyncs every commit (for comparison)."""
    from facegate.fleet import Ed25519Verifier, FleetSync, GalleryStore, MemoryStore, Store

    out = {}
    stores: dict[str, Store] = {
        "memory": MemoryStore(),
        "sqlite_gallery": GalleryStore(Gallery.open(work / "device.db", MODEL)),
        "sqlite_gallery_fsync_each": GalleryStore(Gallery.open(work / "device-full.db", MODEL)),
    }
    for name, store in stores.items():
        sync = FleetSync(store, Ed25519Verifier.from_file(public), MODEL.sha256, MODEL.embedding_size, PREFIX)
        started = time.perf_counter()
        for topic, payload in messages:
            sync.handle(topic, payload)
        out[f"{name}_ms_per_message"] = round((time.perf_counter() - started) / len(messages) * 1000, 3)
        started = time.perf_counter()
        for topic, payload in change:
            sync.handle(topic, payload)
        out[f"{name}_single_change_ms"] = round((time.perf_counter() - started) * 1000, 1)
        if not sync.status()["converged"]:
            raise FacegateError("the single device did not converge")
        sync.close()
    return out


def _broker_memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields["VmRSS"], "peak_mb": fields["VmHWM"]}


def bench_fleet(
    people: int = 10_000,
    devices: int = 100,
    workers: int = 2,
    timeout: float = 600,
    max_queued: int = 0,
    resync_s: float = 30.0,
) -> dict[str, Any]:
    from facegate.fleet import Authority, Ed25519Signer, keygen, manifest_hash

    rng = np.random.default_rng(0)
    report: dict[str, Any] = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "people": people,
        "devices": devices,
        "worker_processes": workers,
        "broker_max_queued_messages": max_queued,
        "resync_after_s": resync_s,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        private, public = keygen(work)
        broker, port = _mosquitto(max_queued)
        pool: list[tuple[Any, multiprocessing.connection.Connection]] = []
        try:
            report["broker_idle"] = _broker_memory(broker.pid)
            gallery = Gallery.open(work / "authority.db", MODEL)
            gallery._db.execute("PRAGMA synchronous = OFF")  # building the benchmark's gallery only
            vectors = rng.standard_normal((people, 128)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for n, v in enumerate(vectors):
                gallery.add(f"person-{n:06d}", [Sample(v, "bench")])
            authority = Authority(gallery, Ed25519Signer(private), PREFIX, work / "authority.fleet.json")
            t0 = time.perf_counter()
            messages = authority.plan()
            authority.published()
            report["sign_s"] = round(time.perf_counter() - t0, 2)
            report["message_bytes"] = int(np.median([len(p) for _, p in messages]))

            ids = [f"sim-{i:03d}" for i in range(devices)]
            ctx = multiprocessing.get_context("spawn")
            for w in range(workers):
                parent, child = ctx.Pipe()
                args = (port, str(public), ids[w::workers], child, resync_s)
                proc = ctx.Process(target=_device_worker, args=args)
                proc.start()
                pool.append((proc, parent))
            for _, conn in pool:
                conn.recv()  # subscribed

            started = _publish(port, messages)
            report["publish_s"] = round(time.time() - started, 2)
            report["initial"] = _gather(pool, manifest_hash(authority.manifest_people()), started, timeout)
            report["broker_after_initial"] = _broker_memory(broker.pid)

            name = "person-000123"
            gallery.add(name, [Sample(vectors[0], "changed")], replace=True)
            change = authority.plan()
            authority.published()
            report["one_device_alone"] = _one_device(messages, change, public, work)
            started = _publish(port, change)
            report["single_change"] = {
                "messages": len(change),
                **_gather(pool, manifest_hash(authority.manifest_people()), started, 60),
            }

            late = ctx.Pipe()
            args = (port, str(public), ["sim-late"], late[1], resync_s)
            proc = ctx.Process(target=_device_worker, args=args)
            started = time.time()
            proc.start()
            late[0].recv()
            joined = _gather([(proc, late[0])], manifest_hash(authority.manifest_people()), started, timeout)
            late[0].send(("stop", "", 0))
            proc.join(30)
            report["late_joiner"] = {"converged_s_from_process_start": joined["all_converged_s"]}
            report["broker_end"] = _broker_memory(broker.pid)
            gallery.close()
        finally:
            for proc, conn in pool:
                if proc.is_alive():
                    conn.send(("stop", "", 0))
                    proc.join(30)
                if proc.is_alive():
                    proc.kill()
            broker.terminate()
            broker.wait(10)
    return report


def format_fleet(r: dict[str, Any]) -> str:
    i, c, o = r["initial"], r["single_change"], r["one_device_alone"]
    lines = [
        f"machine: {r['machine']['cpu']} ({r['machine']['cores']} cores); mosquitto on loopback, "
        f"max_queued_messages {r['broker_max_queued_messages']}",
        f"{r['people']} people -> {r['devices']} simulated devices in {r['worker_processes']} processes "
        f"(signatures checked by each device; entry {r['message_bytes']} B)",
        f"  authority: signed {r['people'] + 1} messages in {r['sign_s']} s, broker acknowledged all "
        f"in {r['publish_s']} s",
        f"  whole gallery: every device converged {i['all_converged_s']} s after the first publish "
        f"(median device {i['median_s']} s; {i['not_converged']} not converged; {i['resyncs']} resyncs)",
        f"  single change ({c['messages']} messages): on every device in {c['all_converged_s']} s "
        f"(median {c['median_s']} s)",
        "  late joiner, from the retained messages alone: "
        f"{r['late_joiner']['converged_s_from_process_start']} s from process start",
        f"  broker RSS: idle {r['broker_idle']['rss_mb']} MB, after the burst "
        f"{r['broker_after_initial']['rss_mb']} MB (peak {r['broker_end']['peak_mb']} MB)",
        f"  device memory: {i['device_mb']} MB each for {r['people']} people "
        "(in-memory store, Python objects)",
        "  one device alone, no broker, ms a message (ms for the single change): "
        + ", ".join(
            f"{store} {o[store + '_ms_per_message']} ({o[store + '_single_change_ms']})"
            for store in ("memory", "sqlite_gallery", "sqlite_gallery_fsync_each")
        ),
    ]
    return "\n".join(lines)
