"""Counters of the detect node and their /diagnostics status (rates over the last period).

The image callback, the inference worker and the diagnostics timer run on different threads,
so every counter update goes through one lock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


@dataclass
class Counters:
    received: int = 0  # image messages that arrived
    processed: int = 0  # frames that went through inference and were published
    dropped: int = 0  # frames replaced by a newer one before the worker took them
    rejected: int = 0  # malformed images
    bad_camera_info: int = 0  # CameraInfo with an unusable K (NaN, zero, negative)
    errors: int = 0  # unexpected failures while processing a frame
    humans: int = 0  # persons in the last processed frame
    latency_sum: float = 0.0
    latency_max: float = 0.0
    k_source: str = "none"


@dataclass
class Stats:
    """Thread-safe counters plus the snapshot of the previous report (for rates)."""

    counters: Counters = field(default_factory=Counters)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _last: Counters = field(default_factory=Counters)
    _last_time: float = field(default_factory=time.monotonic)

    def add(self, **increments) -> None:
        with self.lock:
            for key, value in increments.items():
                setattr(self.counters, key, getattr(self.counters, key) + value)

    def frame_done(self, latency: float, humans: int, k_source: str) -> None:
        with self.lock:
            c = self.counters
            c.processed += 1
            c.latency_sum += latency
            c.latency_max = max(c.latency_max, latency)
            c.humans = humans
            c.k_source = k_source

    def snapshot(self) -> Counters:
        with self.lock:
            return Counters(**vars(self.counters))

    def report(self, name: str, hardware_id: str, extra: dict[str, str], active: bool = True,
               notice: str | None = None) -> DiagnosticArray:
        """A DiagnosticArray over the period since the previous report (resets the latency max).

        The header stamp is left to the caller (the node stamps it with its clock). An inactive node
        is OK without images: it is not listening on purpose. ``notice`` (the model's own warning, e.g.
        checkpoint.DEMO_MODEL_NOTICE) keeps an active node at WARN at least: its first clause is the
        message, after any other problem, and the whole sentence is the ``model_notice`` value.
        """
        now = time.monotonic()
        with self.lock:
            c = Counters(**vars(self.counters))
            self.counters.latency_max = 0.0
            last, elapsed = self._last, max(now - self._last_time, 1e-6)
            self._last, self._last_time = Counters(**vars(c)), now
        processed = c.processed - last.processed
        values = {
            "input_rate_hz": f"{(c.received - last.received) / elapsed:.2f}",
            "processing_rate_hz": f"{processed / elapsed:.2f}",
            "latency_mean_ms": f"{1000 * (c.latency_sum - last.latency_sum) / processed:.1f}" if processed else "nan",
            "latency_max_ms": f"{1000 * c.latency_max:.1f}",
            "frames_received": str(c.received),
            "frames_processed": str(c.processed),
            "frames_dropped": str(c.dropped),
            "frames_rejected": str(c.rejected),
            "camera_info_rejected": str(c.bad_camera_info),
            "errors": str(c.errors),
            "humans": str(c.humans),
            "intrinsics": c.k_source,
            **extra,
        }
        status = DiagnosticStatus(name=name, hardware_id=hardware_id)
        status.level, status.message = DiagnosticStatus.OK, "running"
        if not active:
            status.message = "inactive (not subscribed; a lifecycle manager activates it)"
        elif c.received == last.received:
            status.level, status.message = DiagnosticStatus.WARN, "no images received"
        if c.rejected > last.rejected or c.bad_camera_info > last.bad_camera_info:
            status.level, status.message = DiagnosticStatus.WARN, "malformed input rejected"
        if c.errors > last.errors:
            status.level, status.message = DiagnosticStatus.ERROR, "frames failed during inference"
        if notice:
            values["model_notice"] = notice
            if active:  # e.g. "synthetic demo model: not trained on real people"
                summary = notice.split(";", 1)[0]
                if status.level == DiagnosticStatus.OK:
                    status.level, status.message = DiagnosticStatus.WARN, summary
                else:
                    status.message = f"{status.message}; {summary}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return DiagnosticArray(status=[status])
