"""GenICamSource: GenTL cameras through harvesters. The only importer of harvesters and genicam.

Both are imported lazily (vinspect imports without the ``[camera]`` extra). Rules kept here, from
``line-integration.md`` §3:

* Every fetch is bounded on the monotonic clock; foreground fetch only (thread mode ignores the
  timeout). ``try_fetch`` in a loop, not ``fetch``, which swallows incomplete buffers and restarts
  its timeout after each: we deliver each (INCOMPLETE_BUFFER event) as an ``incomplete`` fault.
* Pixels are copied out while the buffer is ours, padding stripped (pixels.py). The buffer goes
  back to the producer (``queue``) at the start of the next read, or at close, not before the
  frame is returned: on viky the requeue costs about 0.4 ms, which sat between the frame's
  ``acquired_ns`` stamp and its hand-over (issue 21). One buffer of ``num_buffers`` is held
  between two reads.
* ``InvalidHandleException``/``IndexError`` raise CameraDisconnected, other GenTL errors
  CameraError; no node-map reference outlives ``_configure``, so none is touched after destroy.
* A producer loads once per process (a second Harvester on the same ``.cti`` sees no devices):
  sources share one reference-counted Harvester per producer set, the only module state; it is
  rescanned (``update()``) only when no other source holds it (pitfall 10).
* harvesters installs a SIGINT handler when an acquirer is created on the main thread; library
  code must not, so the previous handler is put back. ``GENICAM_GENTL64_PATH`` (the GenTL
  standard's search path) is read when a source opens, never at import.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from vinspect.camera.base import SourceState
from vinspect.camera.config import DeviceSelector, GenICamSettings, find_producers
from vinspect.camera.features import NodeLookup, apply_features, check_device, plan_features
from vinspect.camera.inventory import DeviceDescription, key_features
from vinspect.camera.pixels import PixelFormatError, convert
from vinspect.camera.stats import FrameLedger, Lifecycle, SourceCounters, utc_now
from vinspect.errors import CameraDisconnected, CameraError, ConfigError
from vinspect.types import FaultReason, Frame, FrameFault

__all__ = ["GenICamSource", "describe_devices", "resolve_producers"]

logger = logging.getLogger(__name__)


def resolve_producers(producers: Sequence[Path]) -> tuple[Path, ...]:
    """Absolute producer paths: names searched on ``GENICAM_GENTL64_PATH`` then beside genicam,
    whose bundled ``viky.cti`` is the default.

    Raises:
        ConfigError: a producer that cannot be found.
    """
    import genicam

    bundled = Path(genicam.__path__[0])
    search = [Path(d) for d in os.environ.get("GENICAM_GENTL64_PATH", "").split(os.pathsep) if d]
    return find_producers(producers, search_dirs=[*search, bundled], default=bundled / "viky.cti")


@dataclass(slots=True)
class _Shared:
    harvester: Any
    users: int = 0


_SHARED: dict[tuple[str, ...], _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _acquire_harvester(producers: tuple[Path, ...]) -> Any:
    key = tuple(str(p) for p in producers)
    with _SHARED_LOCK:
        clash = next((k for k in _SHARED if k != key and set(k) & set(key)), None)
        if clash is not None:
            raise ConfigError(
                f"producers {list(key)} overlap {list(clash)} already loaded in this process; "
                "give every camera of one process the same producers list"
            )
        shared = _SHARED.get(key)
        if shared is None:
            shared = _Shared(harvester=_new_harvester(producers))
            _SHARED[key] = shared
        shared.users += 1
        return shared.harvester


def _new_harvester(producers: tuple[Path, ...]) -> Any:
    from genicam import gentl
    from harvesters.core import Harvester

    harvester = Harvester()
    try:
        for producer in producers:
            harvester.add_file(str(producer), check_existence=True, check_validity=True)
        harvester.update()
    except (OSError, gentl.GenericException) as exc:
        harvester.reset()
        raise ConfigError(f"cannot load GenTL producers {[str(p) for p in producers]}: {exc}") from exc
    return harvester


def _release_harvester(producers: tuple[Path, ...]) -> None:
    key = tuple(str(p) for p in producers)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del _SHARED[key]
            shared.harvester.reset()


def _props(info: Any) -> dict[str, Any]:
    """Device-info properties (harvesters maps those a producer lacks to None; the attributes raise)."""
    return dict(info.property_dict)


def _name(info: Any) -> str:
    return f"{_props(info).get('id_')} (serial {_props(info).get('serial_number')!r})"


def _select_device(harvester: Any, selector: DeviceSelector) -> Any:
    infos = list(harvester.device_info_list)
    names = ", ".join(_name(i) for i in infos) or "none"
    if selector.index is not None:
        if selector.index < len(infos):
            return infos[selector.index]
    else:
        key = "serial_number" if selector.serial_number is not None else "user_defined_name"
        wanted = getattr(selector, key)
        matches = [i for i in infos if _props(i).get(key) == wanted]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"device {selector.describe()} matches {len(matches)} devices: {names}")
    raise CameraDisconnected(f"no device with {selector.describe()}; devices found: {names}")


def _create_acquirer(harvester: Any, info: Any) -> Any:
    from genicam import gentl

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if on_main else None
    try:
        return harvester.create(info)
    except gentl.ResourceInUseException as exc:
        raise CameraError(f"device {_name(info)} is already open (here or in another process): {exc}") from exc
    except gentl.GenericException as exc:
        raise CameraDisconnected(f"cannot open device {_name(info)}: {exc}") from exc
    finally:
        if on_main and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _lookup(node_map: Any) -> NodeLookup:
    from genicam import genapi

    def node(name: str) -> Any:
        found = getattr(node_map, name, None)
        return found if found is not None and genapi.is_implemented(found.node) else None

    return node


def _configure(node_map: Any, config: GenICamSettings, *, device: str) -> None:
    from genicam import genapi

    lookup = _lookup(node_map)
    apply_features(lookup, plan_features(config), device=device, refused=(genapi.GenericException,))
    check_device(lookup, device=device)


@dataclass(slots=True)
class _Acquisition:
    """Everything one open device holds; dropped as a whole on close."""

    producers: tuple[Path, ...]
    acquirer: Any
    device: str
    incomplete_events: list[int] = field(default_factory=lambda: [0])
    held: Any = None  # the last fetched buffer, requeued at the next read or at close


def _requeue(acq: _Acquisition) -> None:
    """Give the buffer held since the last read back to the producer (GenTL errors propagate)."""
    buffer, acq.held = acq.held, None
    if buffer is not None:
        buffer.queue()


class GenICamSource:
    """A GenTL camera as a :class:`~vinspect.camera.base.FrameSource` (one open per instance).

    Usage: ``with GenICamSource(config, source_id="cam1") as cam: cam.read(timeout_s=0.2)``.
    Reconnecting is the supervisor's job; it hands each new instance the same
    :class:`FrameLedger` so frame ids keep increasing across reconnects.
    """

    def __init__(self, config: GenICamSettings, *, source_id: str, ledger: FrameLedger | None = None) -> None:
        self.source_id = source_id
        self._config = config
        self._ledger = ledger if ledger is not None else FrameLedger()
        self._lifecycle = Lifecycle(source_id)
        self._acq: _Acquisition | None = None
        self._pending: collections.deque[FrameFault | Frame] = collections.deque()
        self._device_ts = True

    @property
    def state(self) -> SourceState:
        """The lifecycle state."""
        return self._lifecycle.state

    @property
    def stats(self) -> SourceCounters:
        """Frame accounting (shared with the ledger's other holders)."""
        return self._ledger.counters

    @property
    def device(self) -> str:
        """The open device's id, or an empty string."""
        return self._acq.device if self._acq is not None else ""

    def __enter__(self) -> Self:
        self._lifecycle.enter(SourceState.OPENING)
        try:
            self._acq = self._open()
        except BaseException as exc:
            self._lifecycle.enter(SourceState.FAILED, reason=repr(exc))
            self._lifecycle.enter(SourceState.CLOSED)
            raise
        self._ledger.restart()
        self._lifecycle.enter(SourceState.STREAMING, reason=self._acq.device)
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _open(self) -> _Acquisition:
        from genicam import genapi, gentl
        from harvesters.core import Callback, ImageAcquirer

        producers = resolve_producers(self._config.producers)
        harvester = _acquire_harvester(producers)
        acq: _Acquisition | None = None
        try:
            info = _select_device(harvester, self._config.device)
            device = _name(info)
            acq = _Acquisition(producers=producers, acquirer=_create_acquirer(harvester, info), device=device)
            _configure(acq.acquirer.remote_device.node_map, self._config, device=device)
            acq.acquirer.num_buffers = self._config.num_buffers
            acq.acquirer.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _counting(Callback, acq))
            acq.acquirer.start()
        except (gentl.GenericException, genapi.GenericException) as exc:
            self._teardown(acq, producers)
            raise CameraError(f"{self.source_id}: cannot start acquisition: {exc}") from exc
        except BaseException:
            self._teardown(acq, producers)
            raise
        logger.info("camera opened", extra={"source_id": self.source_id, "device": device})
        return acq

    def close(self) -> None:
        """Stop acquisition, release the device and the producer. Safe to call twice."""
        acq, self._acq = self._acq, None
        if acq is not None:
            self._teardown(acq, acq.producers)
        self._pending.clear()
        if self.state != SourceState.CLOSED:
            self._lifecycle.enter(SourceState.CLOSED)

    def _teardown(self, acq: _Acquisition | None, producers: tuple[Path, ...]) -> None:
        from genicam import genapi, gentl

        if acq is not None:
            try:
                _requeue(acq)  # ownership back before stop, as harvesters requires
            except (gentl.GenericException, genapi.GenericException, AttributeError, IndexError, RuntimeError) as exc:
                logger.info(
                    "requeueing the last buffer of %s failed: %r", acq.device, exc, extra={"source_id": self.source_id}
                )  # a lost device: stop and destroy still run
            try:
                acq.acquirer.stop()
                acq.acquirer.destroy()
            except (gentl.GenericException, genapi.GenericException, AttributeError) as exc:
                logger.warning("releasing %s failed: %r", acq.device, exc, extra={"source_id": self.source_id})
        _release_harvester(producers)

    def unplug(self) -> None:
        """Fault injection (any thread): destroy the device handle; a fetch in progress then
        fails with CameraDisconnected, as after a real unplug."""
        acq = self._acq
        if acq is not None:
            acq.acquirer.destroy()

    def read(self, *, timeout_s: float) -> Frame | FrameFault | None:
        """The next frame or fault within ``timeout_s`` capped at ``fetch_timeout_ms`` (a few frame
        periods: nothing wakes a blocked fetch). Gap faults come before their frame.

        Raises:
            CameraDisconnected: the device handle is gone (unplug, destroy).
            CameraError: any other producer error, or the source is not open.
        """
        if self._pending:
            return self._pending.popleft()
        acq = self._acq
        if acq is None:
            raise CameraError(f"{self.source_id}: read on a source that is not open ({self.state})")
        from genicam import genapi, gentl

        timeout_s = min(timeout_s, self._config.fetch_timeout_ms / 1000)
        try:
            _requeue(acq)
        except (gentl.GenericException, genapi.GenericException, IndexError, RuntimeError) as exc:
            # the stream refuses its own buffer back (closed, destroyed): the device is gone
            raise CameraDisconnected(f"{self.source_id}: device {acq.device} lost: {exc!r}") from exc
        try:
            return self._fetch(acq, deadline=time.monotonic() + timeout_s)
        except gentl.TimeoutException:
            return self._fault("timeout", detail=f"no buffer within {timeout_s:.3f} s")
        except (gentl.InvalidHandleException, IndexError) as exc:
            raise CameraDisconnected(f"{self.source_id}: device {acq.device} lost: {exc!r}") from exc
        except RuntimeError as exc:  # harvesters: a destroy (unplug) racing this fetch mutates its monitor dict
            raise CameraDisconnected(f"{self.source_id}: device {acq.device} lost mid-fetch: {exc!r}") from exc
        except (gentl.GenericException, genapi.GenericException) as exc:
            raise CameraError(f"{self.source_id}: producer error on {acq.device}: {exc!r}") from exc

    def _fetch(self, acq: _Acquisition, *, deadline: float) -> Frame | FrameFault:
        seen = acq.incomplete_events[0]
        while (remaining := deadline - time.monotonic()) > 0:
            buffer = acq.acquirer.try_fetch(timeout=max(remaining, 0.001))
            if buffer is not None:
                try:
                    item = self._admit(buffer)  # copies everything it keeps
                except BaseException:
                    buffer.queue()
                    raise
                acq.held = buffer  # requeued by the next read, after this frame is handed over
                return item
            if acq.incomplete_events[0] != seen:
                self._ledger.incomplete()
                return self._fault("incomplete", detail="incomplete buffer discarded by the producer")
        return self._fault("timeout", detail="no complete buffer before the deadline")

    def _admit(self, buffer: Any) -> Frame | FrameFault:
        acquired_ns, captured_at, part = time.monotonic_ns(), utc_now(), buffer.payload.components[0]
        try:
            raw = np.frombuffer(buffer.module.raw_buffer, np.uint8, offset=part.data_offset)
            image = convert(
                raw, pixel_format=part.data_format, width=part.width, height=part.height, x_padding_bytes=part.x_padding
            )
        except PixelFormatError as exc:
            self._ledger.incomplete()
            return self._fault("incomplete", detail=str(exc))
        admission = self._ledger.admit(int(buffer.frame_id))
        frame = Frame(
            image=image.image,
            source_id=self.source_id,
            frame_id=admission.frame_id,
            captured_at=captured_at,
            pixel_format=image.pixel_format,
            origin="camera",
            device_ts_ns=self._timestamp(buffer),
            acquired_ns=acquired_ns,
        )
        if not admission.missing:
            return frame
        detail = f"{len(admission.missing)} frame id(s) missing before {admission.frame_id}"
        faults = [
            FrameFault(source_id=self.source_id, frame_id=i, reason="gap", at=captured_at, detail=detail)
            for i in admission.missing
        ]
        self._pending.extend([*faults[1:], frame])
        return faults[0]

    def _timestamp(self, buffer: Any) -> int | None:
        from genicam import gentl

        if self._device_ts:
            try:
                return int(buffer.timestamp_ns) or None
            except gentl.GenericException:
                self._device_ts = False  # viky and others have none: stop asking every frame
        return None

    def _fault(self, reason: FaultReason, *, detail: str) -> FrameFault:
        if reason == "timeout":
            self._ledger.counters.add("timeouts")
        return FrameFault(source_id=self.source_id, frame_id=None, reason=reason, at=utc_now(), detail=detail)


def _counting(base: type[Any], acq: _Acquisition) -> Any:
    """A harvesters Callback (it must subclass theirs) counting INCOMPLETE_BUFFER events."""

    class _IncompleteCounter(base):  # type: ignore[misc]
        def emit(self, context: object = None) -> None:
            acq.incomplete_events[0] += 1

    return _IncompleteCounter()


def describe_devices(producers: Sequence[Path]) -> list[DeviceDescription]:
    """Every device the producers offer, with its key features (devices in use are marked).

    Raises:
        ConfigError: a producer cannot be found or loaded.
    """
    resolved = resolve_producers(producers)
    harvester = _acquire_harvester(resolved)
    try:
        return [_describe(harvester, index=i, info=info) for i, info in enumerate(harvester.device_info_list)]
    finally:
        _release_harvester(resolved)


def _describe(harvester: Any, *, index: int, info: Any) -> DeviceDescription:
    text = {key: "" if value is None else str(value) for key, value in _props(info).items()}
    status, features = "available", {}
    try:
        acquirer = _create_acquirer(harvester, info)
    except CameraError as exc:
        status = f"cannot open: {exc}"
    else:
        try:
            features = key_features(_lookup(acquirer.remote_device.node_map))
        finally:
            acquirer.destroy()
    return DeviceDescription(
        index=index,
        device_id=text.get("id_", ""),
        vendor=text.get("vendor", ""),
        model=text.get("model", ""),
        serial_number=text.get("serial_number", ""),
        user_defined_name=text.get("user_defined_name", ""),
        status=status,
        features=features,
    )
