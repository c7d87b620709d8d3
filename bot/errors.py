"""The one exception tree of paibot. SDK and provider errors are translated at the boundary.

    PaibotError
    ├── ConfigError            bad config.yaml (names the key path)
    ├── AdapterConfigError     a platform refused us for an operator-fixable reason (token, intent, privacy)
    │   └── CredentialsRejected    the platform rejected the token or password: the adapter stops
    ├── DeliveryError          a platform refused a send for good
    │   ├── PlatformUnavailable    could not reach the platform: nothing was delivered (or the send is safe
    │   │                          to repeat); try again later, the message is not at fault. Also what an
    │   │                          adapter's ``start`` raises when its platform is unreachable (retried)
    │   └── DeliveryUncertain      the send may or may not have arrived (e.g. a timeout after sending)
    ├── DataDirLocked          another process owns the data directory
    ├── MemoryError_           the memory store failed
    ├── WatchRefused           a watch-together command a member may not give (the text says why, to them)
    └── LLMError               a provider call failed
        ├── LLMRetryable       worth retrying (rate limit, 5xx, timeout, connection)
        │   ├── LLMRateLimited     (retry_after may be set)
        │   └── LLMTimeout
        ├── LLMContextTooLong  the prompt must be trimmed
        └── LLMFatal           no point retrying this model (bad credentials, unknown model, bad request)
"""

from __future__ import annotations


class PaibotError(Exception):
    """Base of every error paibot raises on purpose."""


class ConfigError(PaibotError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"config: {path}: {problem}" if path else f"config: {problem}")
        self.path = path
        self.problem = problem


class AdapterConfigError(PaibotError):
    """Raised by an adapter's ``start`` with an explanation the operator can act on. The adapter stops; the
    others keep running (``bot.supervisor``)."""


class CredentialsRejected(AdapterConfigError):
    """The platform rejected the adapter's token or password (Telegram 401/404 on getMe, Discord 401 or
    gateway close 4004, Matrix ``M_UNKNOWN_TOKEN`` / ``M_FORBIDDEN``). The message says how to get a valid
    one and where to put it; retrying cannot help."""


class DeliveryError(PaibotError):
    pass


class PlatformUnavailable(DeliveryError):
    """The platform could not be reached. Adapters raise it only when the send did not happen or repeating
    it cannot duplicate it (Matrix transaction ids, Discord nonces); the core keeps the reply and retries
    with backoff, without counting it against the event.

    An adapter's ``start`` raises it when the platform cannot be reached (DNS failure, refused connection,
    timeout, 5xx): its message names the URL it tried (never a secret), and ``retry_after`` (seconds), when
    the platform said so, is the least wait before the next attempt."""

    def __init__(
        self, message: str = "the platform cannot be reached", *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryUncertain(DeliveryError):
    """The send may have arrived (a timeout after the request went out): the core must not repeat it unless
    the adapter's sends are idempotent."""


class DataDirLocked(PaibotError):
    pass


class MemoryError_(PaibotError):  # noqa: N801 - avoid shadowing the builtin MemoryError
    pass


class WatchRefused(PaibotError):
    """A player command the member may not give (only the starter controls, no session running). The
    message is written for that member, in their group's language."""


class LLMError(PaibotError):
    pass


class LLMRetryable(LLMError):
    pass


class LLMRateLimited(LLMRetryable):
    def __init__(self, message: str = "rate limited", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMTimeout(LLMRetryable):
    pass


class LLMContextTooLong(LLMError):
    pass


class LLMFatal(LLMError):
    pass
