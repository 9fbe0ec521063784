"""Making aiobotocore clients: `ClientOptions`, `ClientPool`, isolated sessions, fast timestamps.

Split from `pos3._s3` to keep each module under ~450 lines. Like `_s3`, it imports aiobotocore
and botocore only inside functions, when the first client is made: ``import pos3`` stays free
of them (``tests/unit/test_lazy_import.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import ProfileError, certificate_failure, translate
from ._profiles import Profile, tls_verify
from ._retry import Retrier
from ._routes import Frozen, Preset, RouteMemo, StaticCredentials, env_credentials
from ._s3 import S3

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    from ._direct import Direct

__all__ = ["ClientOptions", "ClientPool", "parse_timestamp"]


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How clients talk to S3 (set from `pos3.mirror` arguments).

    Attributes:
        max_pool_connections: Connection pool size; at least the transfer concurrency.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds without a byte before a read fails.
        retry_mode: botocore retry mode, ``"standard"`` or ``"adaptive"``.
        max_attempts: Total attempts per request, first one included.
        verify: TLS certificate checks of every client, overriding each profile's and the
            default chain's: ``None`` (keep theirs), ``False`` (no check) or the path of a CA
            bundle (the mirror's ``verify=False`` and ``ca_bundle``; the command line's
            ``--no-verify-ssl`` and ``--ca-bundle``).
    """

    max_pool_connections: int = 20
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_mode: str = "standard"
    max_attempts: int = 5
    verify: bool | str | None = None


_LOADERS: dict[str | None, Any] = {}


def _shared_loader(data_path: str | None) -> Any:
    """One botocore data loader per data path for the whole process.

    A loader caches the service models it has read; a fresh session builds a new one and parses
    botocore's JSON files again, 100-150 ms of CPU for each mirror opened. The models are the
    same for every session, so sessions share the loader (it holds no credentials or settings).
    """
    from botocore.loaders import create_loader

    loader = _LOADERS.get(data_path)
    if loader is None:
        loader = _LOADERS[data_path] = create_loader(data_path)
    return loader


def _isolated_session() -> AioSession:
    """A session that reads no AWS environment variable and no ``~/.aws`` file, and changes none.

    Every setting comes from the client's arguments or botocore's built-in defaults: a broken
    ``AWS_PROFILE``, ``AWS_CONFIG_FILE`` or ``AWS_DEFAULT_REGION`` in the environment cannot reach
    a profile that carries its own credentials (or none, when public).
    """
    from aiobotocore.session import AioSession
    from botocore.configprovider import (
        BOTOCORE_DEFAUT_SESSION_VARIABLES,
        DEFAULT_PROXIES_CONFIG_VARS,
        DEFAULT_S3_CONFIG_VARS,
        ConfigChainFactory,
        ConfigValueStore,
        SectionConfigProvider,
    )

    no_env = {
        name: (config_name, None, os.devnull if name in ("config_file", "credentials_file") else default, convert)
        for name, (config_name, _env, default, convert) in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()
    }
    session = AioSession(session_vars=no_env)
    chains = ConfigChainFactory(session=session, environ={})

    def mapping(variables: Mapping[str, tuple[Any, Any, Any, Any]]) -> dict[str, Any]:
        return {
            name: chains.create_config_chain(
                instance_name=name, env_var_names=None, config_property_names=config_name, default=default,
                conversion_func=convert,
            )
            for name, (config_name, _env, default, convert) in variables.items()
        }

    store = mapping(no_env)
    store["s3"] = SectionConfigProvider("s3", session, mapping(DEFAULT_S3_CONFIG_VARS))
    store["proxies_config"] = SectionConfigProvider("proxies_config", session, mapping(DEFAULT_PROXIES_CONFIG_VARS))
    session.register_component("config_store", ConfigValueStore(mapping=store))
    return session


@functools.lru_cache(maxsize=4096)  # objects written together share their stamps; datetimes are immutable
def parse_timestamp(value: str) -> datetime.datetime:
    """S3's ISO 8601 (listings) and RFC 7231 (headers) timestamps, fast; anything else via botocore."""
    try:
        if value[:4].isdigit():
            stamp = datetime.datetime.fromisoformat(value)
        else:
            stamp = email.utils.parsedate_to_datetime(value)
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=datetime.UTC)
    except (ValueError, TypeError, IndexError):
        from botocore.utils import parse_timestamp as botocore_parse_timestamp

        return botocore_parse_timestamp(value)  # type: ignore[no-any-return]


def _fail_fast_on_certificate_failure(caught_exception: BaseException | None = None, **_: Any) -> None:
    """A ``needs-retry`` handler: a refused certificate is a setting to fix; raise it now, no retries."""
    if caught_exception is not None and certificate_failure(caught_exception) is not None:
        raise caught_exception


def _lean(client: Any) -> None:
    """Drop per-request work whose result pos3 does not need.

    botocore rebuilds the User-Agent header for every request (a ``request-created`` handler) to
    list the SDK features used so far; the header built at client creation is kept instead. This
    touches no signature, checksum or retry: only the User-Agent text sent.
    """
    creator = getattr(client, "_user_agent_creator", None)
    handler = getattr(creator, "rebuild_and_replace_user_agent_handler", None)
    if handler is not None:
        client.meta.events.unregister("request-created.s3", handler)


_UNSIGNED = Frozen("", "", None)  # what `_credentials` gives for a public profile: nothing to sign with


async def _ready(client: Any) -> Any:
    return client


def _credentials(profile: Profile | None, preset: Preset, environ: Mapping[str, str]) -> Any:
    """The credentials ``profile``'s client would resolve, taken without botocore where that is
    certain (`pos3._routes`); `_UNSIGNED` for a public profile, ``None``: leave it to botocore."""
    if profile is not None and profile.public:
        return _UNSIGNED if preset.method is None else None
    if profile is not None and profile.has_credentials:
        if preset.method != "explicit" or profile.access_key is None or profile.secret_key is None:
            return None
        return StaticCredentials(Frozen(profile.access_key, profile.secret_key, profile.session_token), "explicit")
    found = env_credentials(environ) if preset.method == "env" else None
    return StaticCredentials(found, "env") if found is not None else None


THROTTLE_CODES = frozenset({"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException",
                            "RequestLimitExceeded", "TooManyRequests", "429", "RequestThrottled"})


class ClientPool:
    """One aiobotocore client per profile, on the loop that created the pool; closed with it.

    ``on_throttle`` is called for every throttling answer (503 SlowDown...), including those
    botocore retries by itself, so the whole mirror can back off at once (see
    `pos3._retry.Throttle`). ``retrier`` is given to every `S3`: its metadata requests (listing,
    HEAD, DeleteObjects, conditional PUT) ride out outages and throttling by the mirror's rules.
    """

    def __init__(self, options: ClientOptions, on_throttle: Callable[[], None] | None = None,
                 retrier: Retrier | None = None, memo: RouteMemo | None = None) -> None:
        self._options = options
        self._on_throttle = on_throttle
        self._retrier = retrier
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[Profile | None, S3] = {}
        self._botocores: dict[Profile | None, Any] = {}
        self._directs: dict[Profile | None, Direct] = {}
        self._keys: dict[Profile | None, str] = {}  # fingerprints (`pos3._routes.fingerprint`)
        self._memo = memo
        self._lock = anyio.Lock()
        self._make_lock = anyio.Lock()

    def _config(self, profile: Profile | None) -> AioConfig:
        from aiobotocore.config import AioConfig
        from botocore import UNSIGNED

        o = self._options
        kwargs: dict[str, Any] = {
            "max_pool_connections": o.max_pool_connections,
            "connect_timeout": o.connect_timeout,
            "read_timeout": o.read_timeout,
            "retries": {"mode": o.retry_mode, "total_max_attempts": o.max_attempts},
            "tcp_keepalive": True,
            # pos3 builds every request's parameters itself, from typed values: botocore's schema
            # walk over them finds nothing and costs CPU on every request.
            "parameter_validation": False,
        }
        if profile is not None:
            kwargs["s3"] = {"addressing_style": profile.addressing_style}
            kwargs["request_checksum_calculation"] = profile.request_checksum
            kwargs["response_checksum_validation"] = profile.request_checksum
            if profile.public:
                kwargs["signature_version"] = UNSIGNED
        return AioConfig(**kwargs)

    def _session(self, profile: Profile | None) -> AioSession:
        from aiobotocore.session import AioSession

        if profile is not None and (profile.has_credentials or profile.public):
            session = _isolated_session()
        else:
            session = AioSession()
        # botocore parses every timestamp with dateutil, a large share of the client CPU per
        # request; S3 sends two fixed formats, parsed here by the standard library instead.
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        session.register_component("data_loader", _shared_loader(session.get_config_variable("data_path")))
        return session

    async def get(self, profile: Profile | None) -> S3:
        """The client for ``profile`` (``None``: botocore's default chain).

        Its botocore client is made now, or, when a preset is remembered for it (`pos3._routes`),
        only once a request needs one.
        """
        found = self._clients.get(profile)
        if found is not None:
            return found
        async with self._lock:
            found = self._clients.get(profile)
            if found is not None:
                return found
            verify, source = tls_verify(profile, os.environ)
            if self._options.verify is not None:
                verify, source = self._options.verify, "the mirror's ca_bundle (--ca-bundle)"
            if isinstance(verify, str) and not os.path.isfile(verify):
                raise ProfileError(f"{source}: CA bundle {verify} is not a readable file")
            direct = await self._direct(profile, verify)
            if direct is not None and direct.has_routes():
                found = S3(lambda: self._botocore(profile, verify, direct), self._retrier, direct)
            else:
                client = await self._botocore(profile, verify, direct)
                found = S3(lambda: _ready(client), self._retrier, direct)
            self._clients[profile] = found
            return found

    async def _botocore(self, profile: Profile | None, verify: bool | str | None, direct: Direct | None) -> Any:
        """``profile``'s botocore client, made on the first call (``direct`` is attached to it)."""
        found = self._botocores.get(profile)
        if found is not None:
            return found
        async with self._make_lock:
            found = self._botocores.get(profile)
            if found is not None:
                return found
            kwargs: dict[str, Any] = {"config": self._config(profile)}
            if isinstance(verify, str) or verify is False:
                kwargs["verify"] = verify
            if profile is not None:
                kwargs["endpoint_url"] = profile.endpoint
                kwargs["region_name"] = profile.region or "us-east-1"
                if profile.has_credentials:
                    kwargs["aws_access_key_id"] = profile.access_key
                    kwargs["aws_secret_access_key"] = profile.secret_key
                    kwargs["aws_session_token"] = profile.session_token
            try:
                session = self._session(profile)
                creator = session.create_client("s3", **kwargs)
                client: Any = await self._stack.enter_async_context(creator)
                if self._on_throttle is not None:
                    client.meta.events.register("needs-retry.s3", self._observe)
                _lean(client)
                if direct is not None:
                    direct.attach(client, kwargs.get("verify", session.get_config_variable("ca_bundle")))
            except Exception as exc:
                # E.g. AWS_PROFILE names a profile ~/.aws does not have (ProfileNotFound).
                where = profile.endpoint if profile is not None else "the default AWS configuration"
                raise translate(exc, where) from None
            # Registered first, so it runs before botocore's retry handler decides to retry.
            client.meta.events.register_first("needs-retry.s3", _fail_fast_on_certificate_failure)
            self._botocores[profile] = client
            return client

    async def _direct(self, profile: Profile | None, verify: bool | str | None) -> Direct | None:
        """Direct requests for ``profile``'s client (`pos3._direct`), closed with the pool; started
        from the preset remembered for it, if one is and its credentials can be taken without
        botocore. ``None`` when the environment configures a proxy or ``POS3_DIRECT=0``."""
        from ._direct import Direct, enabled

        if not enabled(os.environ):
            return None
        preset, credentials = None, None
        if self._memo is not None:
            key, preset = await anyio.to_thread.run_sync(self._memo.lookup, profile, verify, os.environ)
            self._keys[profile] = key
            credentials = _credentials(profile, preset, os.environ) if preset is not None else None
        o = self._options
        direct = Direct(pool=o.max_pool_connections, connect_timeout=o.connect_timeout, read_timeout=o.read_timeout,
                        parse_time=parse_timestamp, preset=preset if credentials is not None else None,
                        credentials=None if credentials is _UNSIGNED else credentials)
        self._directs[profile] = direct
        self._stack.push_async_callback(direct.aclose)
        return direct

    def _observe(self, response: Any = None, **_: Any) -> None:
        """botocore's ``needs-retry`` event, observed only (returns ``None``: botocore decides)."""
        if self._on_throttle is None or not isinstance(response, tuple) or len(response) != 2:
            return
        parsed = response[1] if isinstance(response[1], Mapping) else {}
        status = getattr(response[0], "status_code", 0)
        code = str(parsed.get("Error", {}).get("Code", ""))
        if code in THROTTLE_CODES or status in (429, 503):
            self._on_throttle()

    async def aclose(self) -> None:
        """Close every client, and remember what they learned (`pos3._routes`)."""
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()
            memo = self._memo
            if memo is not None:
                for profile, direct in self._directs.items():
                    preset = direct.preset()
                    if preset is not None and profile in self._keys:
                        memo.put(self._keys[profile], preset)
                await anyio.to_thread.run_sync(memo.save)
        self._clients.clear()
        self._botocores.clear()
        self._directs.clear()
