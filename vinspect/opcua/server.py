"""The station's OPC UA server (asyncua), on its own thread and event loop, off the verdict path.

Address space, modelled by hand with OPC 40100-1 browse names under ``Objects/VisionSystem``
(namespace ``urn:vinspect:machinevision``; the official NodeSet is not imported):

* ``VisionStateMachine/CurrentState`` (LocalizedText): Preoperational, Operational, Halted or
  Error (:func:`vinspect.opcua.results.vision_state`), and ``StationState`` (vinspect's own).
* ``RecipeManagement/InternalRecipeId`` (``<model>:<version>``) and ``RecipeSha256``: the model in
  force, i.e. the recipe; it changes when the station activates another model version. With a
  recipe book (a station with a store and ``model: {name: ...}``), the methods
  ``GetRecipeListFiltered()`` -> ``RecipeIds`` (String[]): the versions approved for this station,
  and ``PrepareRecipe(ExternalId: String)`` -> ``InternalId`` (String), ``IsCompleted`` (Boolean,
  always false: the switch follows the golden self-test; watch ``InternalRecipeId``), ``Error``
  (Int32, 0 accepted, 1 refused) and ``Message`` (String, the reason) select one
  (:class:`vinspect.store.station_recipes.StationRecipes`). The specification's structured
  recipe-id and product-id arguments are simplified to the recipe id string.
* ``ResultManagement``: emits one ``ResultReadyEventType`` event per part carrying ``ResultId``,
  ``PartId``, ``ResultState``, ``IsPartial``, ``CreationTime``, ``StartTime``, ``EndTime``,
  ``AcquisitionDuration``, ``ProcessingDuration``, ``InternalRecipeId``, ``DefectCode`` and
  ``PartSeq`` (see :mod:`vinspect.opcua.results`), and keeps ``LastResultId``.

Security: anonymous sessions are refused unless ``allow_anonymous``; clients sign in with the
configured user name and password. With a server certificate and key the endpoints are
Basic256Sha256 Sign and SignAndEncrypt only (None too only with ``allow_unsecured``), so the
password and the results travel encrypted; client certificates are accepted without a trust
list (the user name and password authenticate the client). Without a certificate the only
endpoint is None and the password crosses the network as the client sends it: keep such a
server on the line's control network.

The pipeline hands results over through :meth:`VisionServer.publish`, which never blocks: a
full hand-over queue drops the event and counts it (``dropped``); the line is signalled before
any of this runs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from vinspect.errors import ConfigError, SignalError
from vinspect.opcua.results import VisionResult, vision_state
from vinspect.types import Inspection

__all__ = ["NAMESPACE", "OpcUaSettings", "OpcUaSink", "RecipeBook", "VisionServer"]

NAMESPACE = "urn:vinspect:machinevision"
_log = logging.getLogger(__name__)
_RESULT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("ResultId", ua.VariantType.String),
    ("PartId", ua.VariantType.String),
    ("ResultState", ua.VariantType.Int32),
    ("IsPartial", ua.VariantType.Boolean),
    ("CreationTime", ua.VariantType.DateTime),
    ("StartTime", ua.VariantType.DateTime),
    ("EndTime", ua.VariantType.DateTime),
    ("AcquisitionDuration", ua.VariantType.Double),
    ("ProcessingDuration", ua.VariantType.Double),
    ("InternalRecipeId", ua.VariantType.String),
    ("DefectCode", ua.VariantType.String),
    ("PartSeq", ua.VariantType.Int64),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaSettings:
    host: str = "127.0.0.1"
    port: int = 4840
    username: str | None = None
    password: str | None = None
    allow_anonymous: bool = False
    certificate: Path | None = None
    private_key: Path | None = None
    allow_unsecured: bool = False

    def check(self) -> None:
        """Refuse a server nobody could sign in to, or one that is open by accident."""
        if not self.allow_anonymous and not (self.username and self.password):
            raise ConfigError(
                "opcua: anonymous access is off, so a username and a password are needed "
                "(opcua.username and the environment variable opcua.password_env names)"
            )
        if (self.certificate is None) != (self.private_key is None):
            raise ConfigError("opcua: certificate and private_key go together (give both or neither)")
        for name, path in (("certificate", self.certificate), ("private_key", self.private_key)):
            if path is not None and not path.is_file():
                raise ConfigError(f"opcua.{name}: {path} is not a readable file")

    def policies(self) -> list[Any]:
        """Endpoint security: Basic256Sha256 (sign, sign+encrypt) with a certificate, else None only."""
        if self.certificate is None:
            return [ua.SecurityPolicyType.NoSecurity]
        secured = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
        return secured + ([ua.SecurityPolicyType.NoSecurity] if self.allow_unsecured else [])
        if not 0 < self.port < 65536:
            raise ConfigError(f"opcua.port {self.port}: not a TCP port")


class RecipeBook(Protocol):
    """The recipes (model versions) a station may be switched to over OPC UA."""

    def recipes(self) -> list[str]:
        """Recipe ids (``<model>:<version>``) the station may run."""
        ...

    def prepare(self, recipe: str, *, by: str) -> tuple[bool, str]:
        """Select one; (accepted, message)."""
        ...


def _arg(name: str, variant: Any, *, array: bool = False) -> ua.Argument:
    arg = ua.Argument()
    arg.Name, arg.DataType = name, ua.NodeId(variant.value)
    arg.ValueRank = 1 if array else -1
    arg.ArrayDimensions = [0] if array else []
    return arg


class _Users:
    """Username/password check (constant-time); anonymous only when allowed."""

    def __init__(self, settings: OpcUaSettings) -> None:
        self._settings = settings

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        s = self._settings
        if username is None:
            return User(role=UserRole.Anonymous) if s.allow_anonymous else None
        if s.username is None or s.password is None:
            return None
        ok = hmac.compare_digest(username.encode(), s.username.encode()) & hmac.compare_digest(
            (password or "").encode(), s.password.encode()
        )
        if not ok:
            _log.warning("opcua: sign-in refused for user %r", username)
            return None
        return User(role=UserRole.User)


class VisionServer:
    """Start with ``with VisionServer(...) as server``; ``publish`` from any thread."""

    def __init__(
        self,
        settings: OpcUaSettings,
        *,
        station_id: str,
        snapshot: Callable[[], Mapping[str, Any]],
        queue_size: int = 4096,
        poll_s: float = 0.25,
        recipes: RecipeBook | None = None,
    ) -> None:
        settings.check()
        self.recipes = recipes
        self.settings, self.station_id = settings, station_id
        self.endpoint = f"opc.tcp://{settings.host}:{settings.port}/vinspect/"
        self.published = 0
        self.dropped = 0
        self.failed = 0
        self._snapshot, self._queue_size, self._poll_s = snapshot, queue_size, poll_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[VisionResult] | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="vinspect-opcua", daemon=True)

    def __enter__(self) -> VisionServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise SignalError(f"opcua: server on {self.endpoint} did not start within 60 s")
        if self._error is not None:
            raise SignalError(f"opcua: cannot serve {self.endpoint}: {self._error}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout=30)

    def publish(self, result: VisionResult) -> None:
        """Hand one result to the server thread; never blocks, drops (and counts) when full."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            self.dropped += 1
            return
        try:
            loop.call_soon_threadsafe(self._offer, result)
        except RuntimeError:  # loop closed between the check and the call
            self.dropped += 1

    def _offer(self, result: VisionResult) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(result)
        except asyncio.QueueFull:
            self.dropped += 1

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to __enter__ or logged; never kills the station
            self._error = exc
            _log.error("opcua: server on %s stopped: %s", self.endpoint, exc)
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self._queue_size)
        self._stopping = asyncio.Event()
        server = Server(user_manager=_Users(self.settings))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"vinspect station {self.station_id}")
        if self.settings.certificate is not None and self.settings.private_key is not None:
            await server.load_certificate(str(self.settings.certificate))
            await server.load_private_key(str(self.settings.private_key))
        server.set_security_policy(self.settings.policies())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.settings.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(NAMESPACE)
        etype = await server.create_custom_event_type(
            idx, "ResultReadyEventType", ua.object_ids.ObjectIds.BaseEventType, list(_RESULT_FIELDS)
        )
        system = await server.nodes.objects.add_object(idx, "VisionSystem")
        machine = await system.add_object(idx, "VisionStateMachine")
        current = await machine.add_variable(idx, "CurrentState", ua.LocalizedText("Preoperational"))
        own_state = await machine.add_variable(idx, "StationState", "PREOPERATIONAL")
        recipes = await system.add_object(idx, "RecipeManagement")
        recipe_id = await recipes.add_variable(idx, "InternalRecipeId", "")
        recipe_sha = await recipes.add_variable(idx, "RecipeSha256", "")
        if self.recipes is not None:
            await self._add_recipe_methods(recipes, idx)
        results = await system.add_object(idx, "ResultManagement")
        last_id = await results.add_variable(idx, "LastResultId", "")
        generator = await server.get_event_generator(etype, results.nodeid)
        async with server:
            self._ready.set()
            shown: tuple[str, str, str] = ("", "", "")
            while not self._stopping.is_set():
                snap = self._snapshot()
                model = snap.get("model") or {}
                now_shown = (
                    str(snap.get("state", "")),
                    f"{model.get('name')}:{model.get('version')}" if model else "",
                    str(model.get("sha256") or ""),
                )
                if now_shown != shown:
                    await current.write_value(ua.LocalizedText(vision_state(now_shown[0])))
                    await own_state.write_value(now_shown[0])
                    await recipe_id.write_value(now_shown[1])
                    await recipe_sha.write_value(now_shown[2])
                    shown = now_shown
                try:
                    result = await asyncio.wait_for(self._queue.get(), timeout=self._poll_s)
                except TimeoutError:
                    continue
                try:
                    await self._emit(generator, result)
                    await last_id.write_value(result.result_id)
                except (ua.uaerrors.UaError, ValueError, TypeError) as exc:  # one bad result never stops the server
                    self.failed += 1
                    _log.error("opcua: result %s not published: %s", result.result_id, exc)
            while not self._queue.empty():  # results already handed over still go out
                await self._emit(generator, self._queue.get_nowait())

    async def _add_recipe_methods(self, parent: Any, idx: int) -> None:
        book = self.recipes
        assert book is not None
        who = f"opcua:{self.settings.username or 'anonymous'}@{self.station_id}"

        async def listing(_parent: Any) -> list[ua.Variant]:
            try:
                ids = await asyncio.to_thread(book.recipes)
            except Exception as exc:  # the store is unreachable: the MES gets an error, the station runs on
                _log.error("opcua: listing recipes failed: %s", exc)
                raise UaStatusCodeError(StatusCodes.BadResourceUnavailable) from exc  # type: ignore[no-untyped-call]
            return [ua.Variant(ids, ua.VariantType.String)]

        async def prepare(_parent: Any, external_id: ua.Variant) -> list[ua.Variant]:
            recipe = str(external_id.Value or "")
            try:
                ok, message = await asyncio.to_thread(book.prepare, recipe, by=who)
            except Exception as exc:  # as above: refused with the reason, never a crash of the server
                _log.error("opcua: PrepareRecipe %r failed: %s", recipe, exc)
                ok, message = False, f"recipe {recipe!r} not prepared: {exc}"
            return [
                ua.Variant(recipe if ok else "", ua.VariantType.String),
                ua.Variant(False, ua.VariantType.Boolean),
                ua.Variant(0 if ok else 1, ua.VariantType.Int32),
                ua.Variant(message, ua.VariantType.String),
            ]

        await parent.add_method(
            idx, "GetRecipeListFiltered", listing, [], [_arg("RecipeIds", ua.VariantType.String, array=True)]
        )
        await parent.add_method(
            idx,
            "PrepareRecipe",
            prepare,
            [_arg("ExternalId", ua.VariantType.String)],
            [
                _arg("InternalId", ua.VariantType.String),
                _arg("IsCompleted", ua.VariantType.Boolean),
                _arg("Error", ua.VariantType.Int32),
                _arg("Message", ua.VariantType.String),
            ],
        )

    async def _emit(self, generator: Any, result: VisionResult) -> None:
        event = generator.event
        values = {
            "ResultId": result.result_id,
            "PartId": result.part_id,
            "ResultState": result.result_state,
            "IsPartial": result.is_partial,
            "CreationTime": result.creation_time,
            "StartTime": result.start_time,
            "EndTime": result.end_time,
            "AcquisitionDuration": result.acquisition_duration_ms,
            "ProcessingDuration": result.processing_duration_ms,
            "InternalRecipeId": result.internal_recipe_id,
            "DefectCode": result.defect_code,
            "PartSeq": result.part_seq,
        }
        for name, value in values.items():
            setattr(event, name, value)
        await generator.trigger(
            time_attr=result.creation_time,
            message=f"result {result.result_id} part {result.part_id}: state {result.result_state}",
        )
        self.published += 1


class OpcUaSink:
    """An inspection sink (record thread) that publishes each part's result on the OPC UA server."""

    name = "opcua"

    def __init__(self, server: VisionServer) -> None:
        self.server = server

    def write(self, inspection: Inspection) -> None:
        from vinspect.opcua.results import result_of

        self.server.publish(result_of(inspection, decided_at=datetime.now(UTC)))
